#!/usr/bin/env python3
"""Re-creates the committed seed corpora from the real fixtures in ../shared/fixtures/macho.

Run from the repository root: python3 fuzz/seeds/make_seeds.py [path/to/shared]

plist/: the property lists a Developer ID binary and its bundle carry (XML entitlements, the
CMS hash-agility plist, Info.plist, CodeResources) as found, the same re-written as binary
plists by Python's plistlib (a real bplist00 writer), and a few hand-built binary plists that
share, nest and cycle.
der_entitlements/: the DER entitlements blob of the same binary (payload after its header).
"""
import os
import plistlib
import struct
import sys

shared = sys.argv[1] if len(sys.argv) > 1 else os.path.join("..", "shared")
fixtures = os.path.join(shared, "fixtures", "macho")
app = os.path.join(fixtures, "devid_app", "Mitmproxy Redirector.app", "Contents")
here = os.path.dirname(os.path.abspath(__file__))


def write(kind, name, data):
    d = os.path.join(here, kind)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


binary = open(os.path.join(app, "MacOS", "Mitmproxy Redirector"), "rb").read()

# Embedded XML plists: entitlements (blob 0xfade7171) and the hash-agility attribute; the
# first slice's copies are enough.
xml = []
at = 0
while len(xml) < 2:
    start = binary.index(b"<?xml", at)
    end = binary.index(b"</plist>", start) + len(b"</plist>")
    xml.append(binary[start:end + 1 if binary[end:end + 1] == b"\n" else end])
    at = end
write("plist", "entitlements.xml", xml[0])
write("plist", "cdhashes.xml", xml[1])
write("plist", "Info.plist", open(os.path.join(app, "Info.plist"), "rb").read())
resources = open(os.path.join(app, "_CodeSignature", "CodeResources"), "rb").read()
write("plist", "CodeResources.xml", resources)
for name, data in [("entitlements", xml[0]), ("cdhashes", xml[1]),
                   ("Info", open(os.path.join(app, "Info.plist"), "rb").read()),
                   ("CodeResources", resources)]:
    write("plist", name + ".bplist", plistlib.dumps(plistlib.loads(data), fmt=plistlib.FMT_BINARY))


def bplist(objects, top=0, ref_size=1, offset_size=2):
    out = bytearray(b"bplist00")
    offsets = []
    for o in objects:
        offsets.append(len(out))
        out += o
    table = len(out)
    for off in offsets:
        out += off.to_bytes(offset_size, "big")
    out += bytes(6) + bytes([offset_size, ref_size])
    out += struct.pack(">QQQ", len(objects), top, table)
    return bytes(out)


def array(refs):
    n = len(refs)
    head = bytes([0xa0 | n]) if n < 15 else bytes([0xaf, 0x11]) + n.to_bytes(2, "big")
    return head + bytes(refs)


# One 64-byte data object shared by 200 references (decodes within the budget).
write("plist", "shared.bplist", bplist([array([1] * 200), bytes([0x4f, 0x10, 64]) + bytes(64)]))
# An array that contains itself, and a three-step cycle.
write("plist", "cycle_direct.bplist", bplist([array([0])]))
write("plist", "cycle_indirect.bplist", bplist([array([1]), array([2]), array([0])]))
# Forty arrays each holding the next: past the depth cap.
write("plist", "deep.bplist", bplist([array([i + 1]) for i in range(40)] + [array([])]))

# DER entitlements: the blob after the 8-byte header (magic 0xfade7172, length).
at = binary.index(bytes.fromhex("fade7172"))
length = int.from_bytes(binary[at + 4:at + 8], "big")
write("der_entitlements", "devid.der", binary[at + 8:at + length])
