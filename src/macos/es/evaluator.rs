//! The evaluator for ES execs: the file by its path (checked to be the file ES described), the
//! signing identities from the kernel, and the rules decide.

use super::{EsExec, EsMessage, ExecView, FileView, kernel_identity};
use crate::identity::{Verdict, cacheability, problem_of};
use santa_hotpath::{Cacheability, Evaluation, Evaluator};
use santa_rules as rules;
use santa_signing as signing;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

/// The evaluator for ES execs: the file by path, the signing identities from the kernel.
#[derive(Debug)]
pub struct EsEvaluator {
    policy: Arc<rules::PolicyEngine>,
    limits: signing::HashLimits,
}

/// One worker's state.
#[derive(Debug)]
pub struct EsWorker {
    rules: rules::Evaluator,
    scratch: Vec<u8>,
}

impl EsEvaluator {
    /// An evaluator over `policy`, reading at most `hash_bytes_max` bytes of any file.
    pub fn new(policy: Arc<rules::PolicyEngine>, hash_bytes_max: u64) -> Self {
        Self {
            policy,
            limits: crate::identity::hash_limits(hash_bytes_max),
        }
    }

    /// A worker's state.
    pub fn worker(&self) -> EsWorker {
        EsWorker {
            rules: self.policy.evaluator(),
            scratch: Vec::new(),
        }
    }

    /// Decides one exec.
    pub fn evaluate_exec(&self, local: &mut EsWorker, exec: &ExecView<'_>) -> Evaluation<Verdict> {
        let executable = &exec.target.executable;
        let file = match open_executable(executable) {
            Ok(file) => file,
            Err(problem) => return self.unidentified(problem),
        };
        let id = match signing::identify_file(&file, &self.limits, &mut local.scratch) {
            Ok(id) => id,
            Err(e) => return self.unidentified(problem_of(&e)),
        };
        let kernel = kernel_identity(&exec.target, exec.image_cputype);
        let sha256 = *id.hash.sha256.as_bytes();
        // ES gives no certificate: the leaf comes from the file's own signature.
        let leaf = id.signing.as_ref().and_then(|s| s.chain().first());
        let identity = rules::FileIdentity {
            sha256: rules::Sha256(sha256),
            cdhash: kernel.cdhash.map(rules::CdHash),
            signing_id: kernel.signing_ident,
            team_id: kernel.team_id,
            cert_sha256: leaf.map(|c| c.sha256),
            signing_status: kernel.status,
            is_platform_binary: exec.target.is_platform_binary,
            path: executable.path,
            signing_time: id.signing.as_ref().and_then(|s| s.signing_time_unix()),
            secure_signing_time: id
                .signing
                .as_ref()
                .and_then(|s| s.secure_signing_time_unix()),
        };
        // CEL's execution fields (args, envs, euid, cwd) are not yet taken from the ES message:
        // a CEL rule that reads one fails to evaluate (Santa's error path); `path` and `target`
        // are available.
        let decision = local.rules.decide(&identity);
        let cacheability = cacheability(&decision, id.hash.changed);
        Evaluation {
            decision: Verdict {
                signing_status: Some(kernel.status),
                ..Verdict::identified(
                    decision,
                    sha256,
                    leaf,
                    kernel
                        .team_id
                        .map(|t| Arc::from(String::from_utf8_lossy(t.as_bytes()).as_ref())),
                    kernel.signing_id_text().map(Arc::from),
                    kernel.cdhash,
                )
            },
            cacheability,
        }
    }

    /// The decision for a file that could not be identified: the mode decides (Lockdown denies,
    /// Monitor allows), never cached.
    fn unidentified(&self, problem: &'static str) -> Evaluation<Verdict> {
        Evaluation {
            decision: crate::identity::unidentified(&self.policy, problem),
            cacheability: Cacheability::Never,
        }
    }
}

/// Opens the executable ES described, by its path, and checks it is still that file: ES gives
/// a path and a `stat`, not a descriptor, and the path may have been replaced since the exec.
/// `O_NOFOLLOW`: ES's path is already resolved, so a symbolic link there now is a replacement.
pub fn open_executable(file: &FileView<'_>) -> Result<File, &'static str> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    if file.path_truncated {
        return Err("path truncated by Endpoint Security");
    }
    let path = Path::new(std::ffi::OsStr::from_bytes(file.path));
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|_| "file could not be opened")?;
    let meta = opened.metadata().map_err(|_| "file could not be read")?;
    if meta.dev() != file.dev || meta.ino() != file.ino {
        return Err("file replaced since exec");
    }
    Ok(opened)
}

impl<M: EsMessage> Evaluator<EsExec<M>> for EsEvaluator {
    /// Behind an `Arc`, as on Linux (see `identity`).
    type Decision = Arc<Verdict>;
    type Local = EsWorker;

    fn local(&self, _worker: usize) -> EsWorker {
        self.worker()
    }

    fn evaluate(&self, local: &mut EsWorker, payload: &EsExec<M>) -> Evaluation<Arc<Verdict>> {
        let view = payload.msg.view();
        let evaluation = match view.exec() {
            Some(exec) => self.evaluate_exec(local, exec),
            // The intake submits exec messages only.
            None => self.unidentified("not an exec message"),
        };
        Evaluation {
            decision: Arc::new(evaluation.decision),
            cacheability: evaluation.cacheability,
        }
    }
}
