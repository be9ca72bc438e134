//! Santa's CEL rules (v1): a rule whose policy is `CEL` decides by an expression over the
//! executable and the execution.
//!
//! What an expression sees is Santa's `santa.cel.v1.ExecutionContext`, each field a top-level
//! name: `target` (`signing_id`, `team_id`, `signing_time`, `secure_signing_time`,
//! `is_platform_binary`), `args`, `envs`, `euid`, `cwd` and `path`. It returns one of Santa's
//! `ReturnValue` constants (`ALLOWLIST`, `ALLOWLIST_COMPILER`, `BLOCKLIST`, `SILENT_BLOCKLIST`,
//! `SILENT_GUI_BLOCKLIST`, `SILENT_TTY_BLOCKLIST`, bare names as in Santa) or a bool (true
//! allows, false blocks). The result then stands in for the rule's state, under the rule's type.
//!
//! - **Checked when added**: the expression must parse, name only those variables and `target`
//!   fields (and its own comprehension variables), and stay within [`CEL_EXPR_BYTES_MAX`] and
//!   [`CEL_DEPTH_MAX`]. The crate evaluating it ([`cel`], cel-rust) has no type checker, so
//!   this is the part of cel-cpp's checker Santa's add-time refusal relies on; a type mismatch
//!   cel-cpp would refuse (`euid == '0'`) is found only when evaluated (it is then `false`, as
//!   CEL's heterogeneous equality has it).
//! - **Cached** only when the evaluation read nothing but `target` (Santa's rule: it tracks
//!   which execution fields were actually read, so `target.team_id == 'X' || args[0] == 'y'`
//!   stays cacheable when the team matches).
//! - **Errors** at evaluation (a missing map key, an index out of range, a field the platform
//!   cannot supply, a result that is neither a constant nor a bool) are Santa's: with FailClosed
//!   in Lockdown the execution is blocked as unknown; otherwise the rule counts as no rule. A
//!   result of `0` (Santa's `UNSPECIFIED`) is no rule whatever FailClosed says.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};

use cel::common::ast::{EntryExpr, Expr};
use cel::common::value::CowVal;
use cel::context::VariableResolver;
use cel::parser::Expression;
use cel::{Context, Env, Program, Value};

use crate::identity::FileIdentity;
use crate::model::RuleState;

/// Longest expression accepted, in bytes.
pub const CEL_EXPR_BYTES_MAX: usize = 8 * 1024;

/// Deepest expression tree accepted, not counting `&&` and `||` (a long chain of alternatives
/// is common and evaluates without recursing). The evaluator recurses once per level on the
/// worker's stack (about 20 KiB a level in a debug build), so the bound keeps a hostile
/// expression far from the 2 MiB of a thread's stack; real rules nest a handful of levels.
pub const CEL_DEPTH_MAX: usize = 32;

/// Comprehensions (`exists`, `all`, `map`, `filter`, ...) inside another's body, and entries of
/// one list or map literal: with both bounded, an expression's work is bounded by a small power
/// of what it iterates (Santa's cel-cpp sets no such limit; six nested `exists` over ten-element
/// lists already take half a second, on the worker an exec waits for).
pub const CEL_NESTED_COMPREHENSIONS_MAX: usize = 2;
/// See [`CEL_NESTED_COMPREHENSIONS_MAX`].
pub const CEL_LITERAL_ENTRIES_MAX: usize = 256;

/// The parser's thread stack: cel-rust's ANTLR parser recurses deeply per bracket (a debug
/// build overflows 2 MiB at 20 nested parentheses) before its own limit of 96 levels stops it,
/// so expressions are parsed on a thread of their own with room for that limit. Reserved, not
/// committed: only the pages a parse touches cost memory.
const PARSER_STACK_BYTES: usize = 64 << 20;

/// Santa's `ReturnValue` constants as expressions name them, and the rule state each stands for.
pub const RETURN_VALUES: [(&str, i64, RuleState); 6] = [
    ("ALLOWLIST", 1, RuleState::Allow),
    ("ALLOWLIST_COMPILER", 2, RuleState::AllowCompiler),
    ("BLOCKLIST", 3, RuleState::Block),
    ("SILENT_BLOCKLIST", 4, RuleState::SilentBlock),
    ("SILENT_GUI_BLOCKLIST", 9, RuleState::SilentBlockGui),
    ("SILENT_TTY_BLOCKLIST", 10, RuleState::SilentBlockTty),
];

/// The execution fields; reading any of them makes a result uncacheable.
pub const EXEC_FIELDS: [&str; 5] = ["args", "envs", "euid", "cwd", "path"];

/// The fields of `target` (Santa's `ExecutableFile`).
pub const TARGET_FIELDS: [&str; 5] = [
    "signing_id",
    "team_id",
    "signing_time",
    "secure_signing_time",
    "is_platform_binary",
];

/// What the execution offers an expression beyond the file. Each method says why a field is
/// unavailable when it is (the evaluation then fails with that reason, Santa's error path).
/// `Sync` because the evaluator's resolver must be.
pub trait ExecFacts: Sync {
    /// The effective uid of the process executing.
    fn euid(&self) -> Result<u32, &'static str>;
    /// Its working directory.
    fn cwd(&self) -> Result<String, &'static str>;
    /// The new program's arguments.
    fn args(&self) -> Result<Vec<String>, &'static str>;
    /// The new program's environment.
    fn envs(&self) -> Result<Vec<(String, String)>, &'static str>;
}

/// No execution at all (`santactl rule --check`, a decision about a file alone): every
/// execution field is unavailable.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoExec;

const NO_EXEC: &str = "no execution to read it from";

impl ExecFacts for NoExec {
    fn euid(&self) -> Result<u32, &'static str> {
        Err(NO_EXEC)
    }
    fn cwd(&self) -> Result<String, &'static str> {
        Err(NO_EXEC)
    }
    fn args(&self) -> Result<Vec<String>, &'static str> {
        Err(NO_EXEC)
    }
    fn envs(&self) -> Result<Vec<(String, String)>, &'static str> {
        Err(NO_EXEC)
    }
}

/// An expression refused when its rule is added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CelError(pub String);

impl std::fmt::Display for CelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid CEL expression: {}", self.0)
    }
}

impl std::error::Error for CelError {}

/// A CEL rule's expression, compiled once per snapshot. Equal (and hashed) by its text.
pub struct CelRule {
    text: Arc<str>,
    program: Result<Program, CelError>,
}

impl std::fmt::Debug for CelRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CelRule")
            .field("text", &self.text)
            .field("valid", &self.program.is_ok())
            .finish()
    }
}

impl PartialEq for CelRule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for CelRule {}

impl std::hash::Hash for CelRule {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

/// What an evaluation came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CelOutcome {
    /// The rule state the result stands for.
    State(RuleState),
    /// `0`, Santa's `UNSPECIFIED`: no rule.
    Unspecified,
    /// The evaluation failed (or the rule's expression never compiled).
    Error(String),
}

/// One evaluation: its outcome, and whether it read only `target` (then it may be cached).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CelResult {
    /// The outcome.
    pub outcome: CelOutcome,
    /// Nothing but `target` was read.
    pub cacheable: bool,
}

fn env() -> &'static Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Env::stdlib();
        // Santa links cel-cpp's strings extension (join, split, lowerAscii, upperAscii,
        // replace, ...); registering it cannot fail for the stock library, and without it the
        // standard functions still work.
        let _ = env.add_extension(cel::extensions::strings);
        Arc::new(env)
    })
}

/// Checks an expression as Santa does when a rule is added.
pub fn check(text: &str) -> Result<(), CelError> {
    compile(text).map(|_| ())
}

fn compile(text: &str) -> Result<Program, CelError> {
    if text.trim().is_empty() {
        return Err(CelError("the expression is empty".into()));
    }
    if text.len() > CEL_EXPR_BYTES_MAX {
        return Err(CelError(format!(
            "{} bytes; at most {CEL_EXPR_BYTES_MAX} are allowed",
            text.len()
        )));
    }
    // The parser is a third party's: on its own thread (see PARSER_STACK_BYTES), and a panic in
    // it refuses the expression, never the caller.
    std::thread::scope(|scope| {
        let parser = std::thread::Builder::new()
            .name("cel-parse".into())
            .stack_size(PARSER_STACK_BYTES)
            .spawn_scoped(scope, || {
                let program = env()
                    .compile(text)
                    .map_err(|e| CelError(one_line(&e.to_string())))?;
                validate(program.expression(), &mut Vec::new(), 0, 0)?;
                Ok(program)
            })
            .map_err(|e| CelError(format!("could not start the parser: {e}")))?;
        parser
            .join()
            .unwrap_or_else(|_| Err(CelError("the parser failed on it".into())))
    })
}

fn one_line(s: &str) -> String {
    let mut out: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if out.len() > 300 {
        let mut end = 300;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        out.push('…');
    }
    out
}

fn is_declared(name: &str) -> bool {
    name == "target"
        || EXEC_FIELDS.contains(&name)
        || RETURN_VALUES.iter().any(|(n, _, _)| *n == name)
}

/// The part of cel-cpp's checker Santa relies on: every name declared, every `target` field
/// known, and (ours) a bounded depth.
fn validate(
    e: &Expression,
    scope: &mut Vec<String>,
    depth: usize,
    loops: usize,
) -> Result<(), CelError> {
    if depth > CEL_DEPTH_MAX {
        return Err(CelError(format!(
            "nested deeper than {CEL_DEPTH_MAX} levels"
        )));
    }
    let d = match &e.expr {
        Expr::Call(c) if c.func_name == "_||_" || c.func_name == "_&&_" => depth,
        _ => depth + 1,
    };
    let local = |scope: &[String], n: &str| scope.iter().any(|s| s == n);
    match &e.expr {
        Expr::Ident(n) => {
            // `@`-names are the accumulators the macros expand to.
            if n.starts_with('@') || local(scope, n) || is_declared(n) {
                Ok(())
            } else {
                Err(CelError(format!("undeclared reference to '{n}'")))
            }
        }
        Expr::Select(s) => {
            if let Expr::Ident(n) = &s.operand.expr
                && n == "target"
                && !local(scope, n)
                && !TARGET_FIELDS.contains(&s.field.as_str())
            {
                return Err(CelError(format!(
                    "undefined field '{}' of target (it has {})",
                    s.field,
                    TARGET_FIELDS.join(", ")
                )));
            }
            validate(&s.operand, scope, d, loops)
        }
        Expr::Call(c) => {
            if let Some(t) = &c.target {
                validate(t, scope, d, loops)?;
            }
            c.args.iter().try_for_each(|a| validate(a, scope, d, loops))
        }
        Expr::Comprehension(c) => {
            if loops >= CEL_NESTED_COMPREHENSIONS_MAX {
                return Err(CelError(format!(
                    "more than {CEL_NESTED_COMPREHENSIONS_MAX} comprehensions (exists, all, map, \
                     filter) nested in one another"
                )));
            }
            validate(&c.iter_range, scope, d, loops)?;
            validate(&c.accu_init, scope, d, loops)?;
            let before = scope.len();
            scope.push(c.iter_var.clone());
            scope.extend(c.iter_var2.clone());
            scope.push(c.accu_var.clone());
            let r = validate(&c.loop_cond, scope, d, loops + 1)
                .and_then(|()| validate(&c.loop_step, scope, d, loops + 1))
                .and_then(|()| validate(&c.result, scope, d, loops));
            scope.truncate(before);
            r
        }
        Expr::List(l) if l.elements.len() > CEL_LITERAL_ENTRIES_MAX => {
            Err(too_many(l.elements.len()))
        }
        Expr::Map(m) if m.entries.len() > CEL_LITERAL_ENTRIES_MAX => Err(too_many(m.entries.len())),
        Expr::List(l) => l
            .elements
            .iter()
            .try_for_each(|x| validate(x, scope, d, loops)),
        Expr::Map(m) => m.entries.iter().try_for_each(|en| match &en.expr {
            EntryExpr::MapEntry(me) => {
                validate(&me.key, scope, d, loops)?;
                validate(&me.value, scope, d, loops)
            }
            EntryExpr::StructField(f) => validate(&f.value, scope, d, loops),
        }),
        Expr::Struct(s) => Err(CelError(format!(
            "message construction ({}) is not supported",
            s.type_name
        ))),
        Expr::Literal(_) | Expr::Unspecified => Ok(()),
    }
}

fn too_many(n: usize) -> CelError {
    CelError(format!(
        "a literal of {n} entries; at most {CEL_LITERAL_ENTRIES_MAX} are allowed"
    ))
}

impl CelRule {
    /// Compiles a stored rule's expression. One that does not compile (a database written
    /// elsewhere) is kept: every evaluation of it fails, which is Santa's outcome too.
    pub fn compile(text: &str) -> CelRule {
        CelRule {
            text: Arc::from(text),
            program: compile(text),
        }
    }

    /// The expression.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Evaluates it for `file`, executed with `exec`.
    pub fn evaluate(&self, file: &FileIdentity<'_>, exec: &dyn ExecFacts) -> CelResult {
        let program = match &self.program {
            Ok(p) => p,
            Err(e) => {
                return CelResult {
                    outcome: CelOutcome::Error(e.to_string()),
                    cacheable: true,
                };
            }
        };
        let resolver = Resolver {
            target: target_value(file),
            file,
            exec,
            read: AtomicU8::new(0),
            unavailable: OnceLock::new(),
        };
        let mut ctx = Context::with_env(Arc::clone(env()));
        ctx.set_variable_resolver(&resolver);
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| program.execute(&ctx)));
        let cacheable = resolver.read.load(Ordering::Relaxed) == 0;
        let outcome = match result {
            Err(_) => CelOutcome::Error("the evaluator failed".into()),
            Ok(Err(e)) => CelOutcome::Error(match resolver.unavailable.get() {
                Some((name, why)) => format!("{name} is not available: {why}"),
                None => one_line(&e.to_string()),
            }),
            Ok(Ok(Value::Bool(true))) => CelOutcome::State(RuleState::Allow),
            Ok(Ok(Value::Bool(false))) => CelOutcome::State(RuleState::Block),
            Ok(Ok(Value::Int(0))) => CelOutcome::Unspecified,
            Ok(Ok(Value::Int(n))) => match RETURN_VALUES.iter().find(|(_, v, _)| *v == n) {
                Some(&(_, _, state)) => CelOutcome::State(state),
                None => CelOutcome::Error(format!("expected 'ReturnValue' result got '{n}'")),
            },
            Ok(Ok(other)) => CelOutcome::Error(format!(
                "expected 'ReturnValue' result got a {}",
                type_name(&other)
            )),
        };
        CelResult { outcome, cacheable }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::UInt(_) => "uint",
        Value::Float(_) => "double",
        Value::List(_) => "list",
        Value::Map(_) => "map",
        Value::Null => "null",
        Value::Bytes(_) => "bytes",
        Value::Timestamp(_) => "timestamp",
        Value::Duration(_) => "duration",
        _ => "value of another type",
    }
}

/// Santa's `FormatSigningID`: `TEAMID:ident`, or `platform:ident` for a platform binary with no
/// Team ID, else empty.
fn signing_id_text(file: &FileIdentity<'_>) -> String {
    match (file.signing_id, file.team_id, file.is_platform_binary) {
        (Some(ident), Some(team), _) => format!("{}:{ident}", team.as_str()),
        (Some(ident), None, true) => format!("platform:{ident}"),
        _ => String::new(),
    }
}

fn timestamp(secs: Option<i64>) -> Value {
    use chrono::TimeZone;
    // An unset time reads as the epoch, as an unset protobuf Timestamp does in cel-cpp.
    let t = chrono::Utc
        .timestamp_opt(secs.unwrap_or(0), 0)
        .single()
        .unwrap_or_default();
    Value::Timestamp(t.fixed_offset())
}

fn target_value(file: &FileIdentity<'_>) -> Value {
    let team = file
        .team_id
        .map_or(String::new(), |t| t.as_str().to_owned());
    let fields: std::collections::HashMap<String, Value> = [
        ("signing_id", Value::from(signing_id_text(file))),
        ("team_id", Value::from(team)),
        ("signing_time", timestamp(file.signing_time)),
        ("secure_signing_time", timestamp(file.secure_signing_time)),
        ("is_platform_binary", Value::Bool(file.is_platform_binary)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    fields.into()
}

/// Resolves the names lazily, recording which execution fields were read (Santa's memoizers).
struct Resolver<'a> {
    target: Value,
    file: &'a FileIdentity<'a>,
    exec: &'a dyn ExecFacts,
    /// One bit per [`EXEC_FIELDS`] entry read.
    read: AtomicU8,
    /// The first field the platform could not supply, and why.
    unavailable: OnceLock<(&'static str, &'static str)>,
}

impl Resolver<'_> {
    fn exec_field(&self, index: usize, name: &'static str) -> Option<Value> {
        self.read.fetch_or(1 << index, Ordering::Relaxed);
        let value = match name {
            "euid" => self.exec.euid().map(|u| Value::Int(i64::from(u))),
            "cwd" => self.exec.cwd().map(Value::from),
            "args" => self.exec.args().map(Value::from),
            "envs" => self.exec.envs().map(|e| {
                e.into_iter()
                    .collect::<std::collections::HashMap<String, String>>()
                    .into()
            }),
            "path" if !self.file.path.is_empty() => Ok(Value::from(
                String::from_utf8_lossy(self.file.path).into_owned(),
            )),
            _ => Err("the path is not known (executed through another mount namespace)"),
        };
        match value {
            Ok(v) => Some(v),
            Err(why) => {
                let _ = self.unavailable.set((name, why));
                None
            }
        }
    }
}

impl VariableResolver for Resolver<'_> {
    fn resolve<'b>(&'b self, name: &str) -> Option<CowVal<'b, 'b>> {
        let value = if name == "target" {
            self.target.clone()
        } else if let Some(i) = EXEC_FIELDS.iter().position(|f| *f == name) {
            self.exec_field(i, EXEC_FIELDS[i])?
        } else if let Some((_, n, _)) = RETURN_VALUES.iter().find(|(k, _, _)| *k == name) {
            Value::Int(*n)
        } else {
            return None;
        };
        value.try_into().ok().map(CowVal::Owned)
    }
}
