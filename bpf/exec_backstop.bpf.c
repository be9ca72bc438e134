// SPDX-License-Identifier: GPL-2.0
//
// santad's exec backstop: a program on the BTF tracepoint sched_process_exec, which every
// successful execve and execveat passes after its point of no return and before the new image
// runs a single instruction in user space.
//
// fanotify holds and answers execs of files on the superblocks (and mounts) santad marked. This
// program covers what fanotify cannot see:
// - a binary on a superblock no santad mark covers: a user-namespace mount, a memfd or another
//   kernel-internal mount, a mount santad has not marked yet;
// - a direct execution of the dynamic loader (`ld.so ./tool`), which would map `./tool` with no
//   exec check at all. The loader the kernel loads for an ELF's PT_INTERP is not the exec's
//   binary (bprm->file is the ELF), so only direct runs match.
// In Lockdown, for a process in santad's enforcement scope, it kills the process (SIGKILL, taken
// before the process returns to user space: the program never runs); otherwise it reports. Each
// case is sent to santad on a ring buffer, with its own reason.
//
// Why not an LSM program on bprm_check_security, which could return -EPERM: kernels that refuse
// trampoline-attached programs (these machines refuse every BPF_PROG_TYPE_LSM and fentry load
// with EPERM, and have no kprobes) cannot run one; BTF tracepoints load wherever BPF with BTF
// does. src/linux/backstop.rs says what this costs in coverage.
//
// Kernel types are declared here with only the fields used, marked preserve_access_index: clang
// emits CO-RE relocations and the loader resolves each field's offset against the running
// kernel's BTF, so no vmlinux.h is generated and the object runs on any kernel with BTF.

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef int __s32;
typedef long long __s64;

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name
#define CORE __attribute__((preserve_access_index))

#define BPF_MAP_TYPE_HASH 1
#define BPF_MAP_TYPE_ARRAY 2
#define BPF_MAP_TYPE_PERCPU_ARRAY 6
#define BPF_MAP_TYPE_RINGBUF 27

#define SIGKILL 9
// include/linux/fsnotify_backend.h
#define FS_OPEN_EXEC_PERM 0x00040000

struct super_block {
	__u32 s_dev;
	__u32 s_fsnotify_mask;
} CORE;

struct inode {
	unsigned long i_ino;
	struct super_block *i_sb;
	long long i_size;
	long long i_ctime_sec; // Linux 6.11+ (the seconds and nanoseconds split)
	__u32 i_ctime_nsec;    // bit 31: I_CTIME_QUERIED (multigrain timestamps), not time
} CORE;

struct vfsmount {
	struct super_block *mnt_sb;
} CORE;

struct mount {
	struct vfsmount mnt;
	__u32 mnt_fsnotify_mask;
	int mnt_id;
} CORE;

struct path {
	struct vfsmount *mnt;
} CORE;

struct file {
	struct path f_path;
	struct inode *f_inode;
} CORE;

struct vm_area_struct {
	struct file *vm_file;
} CORE;

// The user registers of a task (the new image's, once the exec has set them up).
#if defined(__TARGET_ARCH_x86)
struct pt_regs {
	unsigned long ip;
} CORE;
#define ENTRY_IP(regs) ((regs)->ip)
#elif defined(__TARGET_ARCH_arm64)
struct pt_regs {
	unsigned long pc;
} CORE;
#define ENTRY_IP(regs) ((regs)->pc)
#else
#error "set __TARGET_ARCH_x86 or __TARGET_ARCH_arm64 (build.rs does)"
#endif

struct linux_binprm {
	struct file *executable;
	struct file *file;
	const char *filename;
} CORE;

typedef struct {
	__u32 val; // the id in the initial user namespace
} kgid_t;

struct group_info {
	int ngroups;
	kgid_t gid[0];
} CORE;

struct cred {
	struct group_info *group_info;
} CORE;

struct task_struct {
	int tgid;
	struct task_struct *real_parent;
	const struct cred *real_cred;
} CORE;

// Helpers, by their stable numbers (include/uapi/linux/bpf.h).
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_probe_read_kernel)(void *dst, __u32 size, const void *src) = (void *)113;
static long (*bpf_probe_read_kernel_str)(void *dst, __u32 size, const void *src) = (void *)115;
static __u64 (*bpf_get_current_pid_tgid)(void) = (void *)14;
static __u64 (*bpf_get_current_uid_gid)(void) = (void *)15;
static long (*bpf_get_current_comm)(void *buf, __u32 size) = (void *)16;
static __u64 (*bpf_get_current_cgroup_id)(void) = (void *)80;
static long (*bpf_map_delete_elem)(void *map, const void *key) = (void *)3;
static __u64 (*bpf_get_current_ancestor_cgroup_id)(int level) = (void *)123;
static void *(*bpf_ringbuf_reserve)(void *ringbuf, __u64 size, __u64 flags) = (void *)131;
static void (*bpf_ringbuf_submit)(void *data, __u64 flags) = (void *)132;
static struct task_struct *(*bpf_get_current_task_btf)(void) = (void *)158;
static long (*bpf_send_signal)(__u32 sig) = (void *)109;
static struct pt_regs *(*bpf_task_pt_regs)(struct task_struct *task) = (void *)175;
static long (*bpf_find_vma)(struct task_struct *task, __u64 addr, void *callback_fn,
			    void *callback_ctx, __u64 flags) = (void *)180;

// Shared with src/linux/backstop.rs (the same layout, #[repr(C)]).
#define SCOPE_CGROUPS_MAX 8
// Supplementary groups looked at (a process with more is checked on its first ones only).
#define SCOPE_GROUPS_MAX 64
#define FILENAME_BYTES 256

struct scope_cgroup {
	__u64 id;
	__u32 level;
	__u32 pad;
};

struct backstop_config {
	__u32 active;     // 0: every exec passes (santad starting or stopping)
	__u32 lockdown;   // 1: deny in scope; 0: report only
	__u32 scope_all;  // 1: every process is in scope
	__u32 cgroups;    // entries of cgroup[] in use
	struct scope_cgroup cgroup[SCOPE_CGROUPS_MAX];
};

struct loader_key {
	__u32 dev;
	__u32 pad;
	__u64 ino;
};

// Why an exec came here. 0 is never sent.
#define REASON_UNWATCHED 1
#define REASON_LOADER 2
// The first instruction the new image runs is in a file on an unwatched filesystem (an ELF
// interpreter other than the system's: PT_INTERP is looked up in the process's own mount
// namespace, where a user can mount anything over /lib64).
#define REASON_ENTRY 3
// The entry point could not be looked up (the mm lock was busy): reported, never killed.
#define REASON_ENTRY_UNCHECKED 4
// santad allowed this process's exec of a file its owner can write, and the file's change time
// or size moved between the answer and this point (past the kernel's write lock, so it cannot
// move again): different bytes would run than were decided on.
#define REASON_CHANGED 5

struct backstop_event {
	__u32 reason;
	__u32 denied;
	__u32 pid;
	__u32 ppid;
	__u32 uid;
	__u32 gid;
	__u32 dev;
	__u32 pad;
	__u64 ino;
	__u64 cgroup;
	char comm[16];
	char filename[FILENAME_BYTES];
};

#define STAT_CHECKED 0
#define STAT_DENIED 1
#define STAT_REPORTED 2
#define STAT_DROPPED 3
#define STAT_ENTRY_UNCHECKED 4
#define STATS 5

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct backstop_config);
} config SEC(".maps");

// Superblocks santad holds a FAN_MARK_FILESYSTEM mark on, by kernel device number.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u32);
} marked_sbs SEC(".maps");

// Mounts santad holds a FAN_MARK_MOUNT mark on (WatchPaths), by mount id.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __s32);
	__type(value, __u32);
} marked_mounts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct loader_key);
	__type(value, __u32);
} loaders SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u32);
} scope_uids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u32);
} scope_gids SEC(".maps");

// Allows santad gave for files their owner can write, by process and inode, with the file's
// change time and size at the answer. The exec's last check compares them; santad removes an
// entry once that exec is over (or its process gone).
struct allowed_key {
	__u32 tgid;
	__u32 pad;
	__u64 ino;
};

struct allowed_stamp {
	__s64 ctime_ns;
	__u64 size;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, struct allowed_key);
	__type(value, struct allowed_stamp);
} allowed SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STATS);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

static __attribute__((always_inline)) void count(__u32 which)
{
	__u64 *n = bpf_map_lookup_elem(&stats, &which);
	if (n)
		*n += 1;
}

static __attribute__((always_inline)) int in_scope(const struct backstop_config *cfg, __u64 uid_gid)
{
	if (cfg->scope_all)
		return 1;
	__u32 uid = (__u32)uid_gid;
	__u32 gid = (__u32)(uid_gid >> 32);
	if (bpf_map_lookup_elem(&scope_uids, &uid))
		return 1;
	if (bpf_map_lookup_elem(&scope_gids, &gid))
		return 1;
	// Supplementary groups too: an unprivileged process cannot drop them (setgroups needs
	// CAP_SETGID, and a user namespace made without it has setgroups denied), while its real
	// group changes with newgrp or sg.
	struct task_struct *task = bpf_get_current_task_btf();
	struct group_info *gi = task->real_cred->group_info;
	int n = gi->ngroups;
	for (int i = 0; i < SCOPE_GROUPS_MAX; i++) {
		if (i >= n)
			break;
		__u32 g = 0;
		if (bpf_probe_read_kernel(&g, sizeof(g), __builtin_preserve_access_index(&gi->gid[i].val)) < 0)
			break;
		if (bpf_map_lookup_elem(&scope_gids, &g))
			return 1;
	}
	for (int i = 0; i < SCOPE_CGROUPS_MAX; i++) {
		if ((__u32)i >= cfg->cgroups)
			break;
		if (bpf_get_current_ancestor_cgroup_id(cfg->cgroup[i].level) == cfg->cgroup[i].id)
			return 1;
	}
	return 0;
}

// The exec has passed its point of no return: the new image is in place and no instruction of
// it has run. A deny is SIGKILL to the process, delivered before it returns to user space.
// bprm->file is the binary the kernel loaded last (a script's interpreter); bprm->executable
// the file execve named (the script itself, or the same file).
static __attribute__((always_inline)) __u32 uncovered(struct file *file, __u32 *dev_out, __u64 *ino_out)
{
	struct inode *inode = file->f_inode;
	struct super_block *sb = inode->i_sb;
	__u32 dev = sb->s_dev;
	__u64 ino = inode->i_ino;
	*dev_out = dev;
	*ino_out = ino;

	struct loader_key lk = {.dev = dev, .pad = 0, .ino = ino};
	if (bpf_map_lookup_elem(&loaders, &lk))
		return REASON_LOADER;
	// Covered: santad's mark is on this superblock (or mount) and the kernel holds a
	// permission mark there. Only a root fanotify group can hold one (permission events need
	// CAP_SYS_ADMIN in the initial namespace), so a device number reused by a user's own
	// mount after one of santad's went away is not taken for covered.
	if ((sb->s_fsnotify_mask & FS_OPEN_EXEC_PERM) && bpf_map_lookup_elem(&marked_sbs, &dev))
		return 0;
	struct vfsmount *vfs = file->f_path.mnt;
	struct mount *mnt = (struct mount *)((char *)vfs -
		__builtin_preserve_field_info(((struct mount *)0)->mnt, 0 /* byte offset */));
	__u32 mnt_mask = 0;
	int mnt_id = 0;
	bpf_probe_read_kernel(&mnt_mask, sizeof(mnt_mask),
			      __builtin_preserve_access_index(&mnt->mnt_fsnotify_mask));
	bpf_probe_read_kernel(&mnt_id, sizeof(mnt_id), __builtin_preserve_access_index(&mnt->mnt_id));
	if ((mnt_mask & FS_OPEN_EXEC_PERM) && bpf_map_lookup_elem(&marked_mounts, &mnt_id))
		return 0;
	return REASON_UNWATCHED;
}

struct entry_check {
	struct file *binary;
	__u32 reason;
	__u32 dev;
	__u64 ino;
};

// bpf_find_vma's callback: the mapping that holds the entry point.
static long entry_vma(struct task_struct *task, struct vm_area_struct *vma, struct entry_check *c)
{
	struct file *file = vma->vm_file;
	if (!file) {
		c->reason = REASON_ENTRY;
		return 0;
	}
	if (file == c->binary)
		return 0;
	// A loader inode on a watched filesystem is the expected interpreter.
	if (uncovered(file, &c->dev, &c->ino) == REASON_UNWATCHED)
		c->reason = REASON_ENTRY;
	return 0;
}

SEC("tp_btf/sched_process_exec")
int santad_exec(__u64 *ctx)
{
	struct linux_binprm *bprm = (struct linux_binprm *)ctx[2];

	__u32 zero = 0;
	struct backstop_config *cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg || !cfg->active)
		return 0;
	count(STAT_CHECKED);

	__u32 dev = 0;
	__u64 ino = 0;
	__u32 reason = uncovered(bprm->file, &dev, &ino);
	if (!reason && bprm->executable && bprm->executable != bprm->file)
		reason = uncovered(bprm->executable, &dev, &ino);
	struct task_struct *task = bpf_get_current_task_btf();
	if (!reason) {
		// An allow of a file its owner can write holds only for the bytes decided on.
		struct allowed_key ak = {
			.tgid = bpf_get_current_pid_tgid() >> 32,
			.pad = 0,
			.ino = bprm->file->f_inode->i_ino,
		};
		struct allowed_stamp *st = bpf_map_lookup_elem(&allowed, &ak);
		if (st) {
			struct inode *inode = bprm->file->f_inode;
			__s64 ctime_ns = inode->i_ctime_sec * 1000000000LL +
					 (inode->i_ctime_nsec & 0x7fffffff);
			if (ctime_ns != st->ctime_ns || (__u64)inode->i_size != st->size) {
				reason = REASON_CHANGED;
				dev = bprm->file->f_inode->i_sb->s_dev;
				ino = ak.ino;
			}
			bpf_map_delete_elem(&allowed, &ak);
		}
	}
	if (!reason) {
		// The code that runs first: the binary's own entry point, or its ELF interpreter's.
		struct pt_regs *regs = bpf_task_pt_regs(task);
		struct entry_check c = {.binary = bprm->file, .reason = 0, .dev = 0, .ino = 0};
		if (bpf_find_vma(task, ENTRY_IP(regs), entry_vma, &c, 0) != 0) {
			count(STAT_ENTRY_UNCHECKED);
			reason = REASON_ENTRY_UNCHECKED;
		} else if (c.reason) {
			reason = c.reason;
			dev = c.dev;
			ino = c.ino;
		}
	}
	if (!reason)
		return 0;

	__u64 uid_gid = bpf_get_current_uid_gid();
	int deny = reason != REASON_ENTRY_UNCHECKED && cfg->lockdown && in_scope(cfg, uid_gid);
	if (deny)
		bpf_send_signal(SIGKILL);
	count(deny ? STAT_DENIED : STAT_REPORTED);

	struct backstop_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(STAT_DROPPED);
		return 0;
	}
	e->reason = reason;
	e->denied = deny;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->ppid = task->real_parent->tgid;
	e->uid = (__u32)uid_gid;
	e->gid = (__u32)(uid_gid >> 32);
	e->dev = dev;
	e->pad = 0;
	e->ino = ino;
	e->cgroup = bpf_get_current_cgroup_id();
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	if (bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), bprm->filename) < 0)
		e->filename[0] = 0;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
