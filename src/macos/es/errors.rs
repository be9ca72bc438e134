//! Endpoint Security's result codes as errors: answering a message, creating the client,
//! clearing ES's cache.

/// Why an AUTH answer did not reach the kernel (`es_respond_result_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RespondError {
    /// `ES_RESPOND_RESULT_ERR_INVALID_ARGUMENT`.
    InvalidArgument,
    /// `ES_RESPOND_RESULT_ERR_INTERNAL`: communication with ES failed.
    Internal,
    /// `ES_RESPOND_RESULT_NOT_FOUND`: the message is unknown (already past its deadline).
    NotFound,
    /// `ES_RESPOND_RESULT_ERR_DUPLICATE_RESPONSE`: answered twice (a bug: the engine answers
    /// exactly once).
    Duplicate,
    /// `ES_RESPOND_RESULT_ERR_EVENT_TYPE`: not an auth-result event.
    EventType,
    /// A value this build does not know.
    Unknown(u32),
}

impl RespondError {
    /// `es_respond_result_t` → `Ok` or the error (values from `ESTypes.h`).
    pub fn check(code: u32) -> Result<(), RespondError> {
        Err(match code {
            0 => return Ok(()),
            1 => Self::InvalidArgument,
            2 => Self::Internal,
            3 => Self::NotFound,
            4 => Self::Duplicate,
            5 => Self::EventType,
            other => Self::Unknown(other),
        })
    }
}

/// Why `es_new_client` refused santad: each a startup error an operator can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewClientError {
    /// `ES_NEW_CLIENT_RESULT_ERR_INVALID_ARGUMENT`.
    InvalidArgument,
    /// `ES_NEW_CLIENT_RESULT_ERR_INTERNAL`.
    Internal,
    /// `ES_NEW_CLIENT_RESULT_ERR_NOT_ENTITLED`.
    NotEntitled,
    /// `ES_NEW_CLIENT_RESULT_ERR_NOT_PERMITTED`: no TCC (Full Disk Access) approval.
    NotPermitted,
    /// `ES_NEW_CLIENT_RESULT_ERR_NOT_PRIVILEGED`.
    NotPrivileged,
    /// `ES_NEW_CLIENT_RESULT_ERR_TOO_MANY_CLIENTS`.
    TooManyClients,
    /// A value this build does not know.
    Unknown(u32),
}

impl NewClientError {
    /// `es_new_client_result_t` → `Ok` or the error (values from `ESTypes.h`).
    pub fn check(code: u32) -> Result<(), NewClientError> {
        Err(match code {
            0 => return Ok(()),
            1 => Self::InvalidArgument,
            2 => Self::Internal,
            3 => Self::NotEntitled,
            4 => Self::NotPermitted,
            5 => Self::NotPrivileged,
            6 => Self::TooManyClients,
            other => Self::Unknown(other),
        })
    }
}

impl std::fmt::Display for NewClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotPrivileged => f.write_str("santad is not running as root"),
            Self::NotEntitled => f.write_str(
                "the santad binary lacks the com.apple.developer.endpoint-security.client \
                 entitlement (it must be signed with a provisioning profile that grants it)",
            ),
            Self::NotPermitted => f.write_str(
                "santad has no Full Disk Access (TCC): approve it in System Settings > Privacy \
                 & Security > Full Disk Access, or with an MDM PPPC profile",
            ),
            Self::TooManyClients => f.write_str(
                "too many Endpoint Security clients are connected (is another santad running?)",
            ),
            Self::InvalidArgument => f.write_str("invalid argument to es_new_client"),
            Self::Internal => f.write_str("Endpoint Security internal error"),
            Self::Unknown(code) => write!(f, "es_new_client returned unknown result {code}"),
        }
    }
}

impl std::error::Error for NewClientError {}

/// Why `es_clear_cache` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClearCacheError {
    /// `ES_CLEAR_CACHE_RESULT_ERR_INTERNAL`.
    Internal,
    /// `ES_CLEAR_CACHE_RESULT_ERR_THROTTLE`: called too often (the cache is shared by every
    /// ES client, so the kernel rate-limits clearing it).
    Throttled,
    /// A value this build does not know.
    Unknown(u32),
}

impl ClearCacheError {
    /// `es_clear_cache_result_t` → `Ok` or the error.
    pub fn check(code: u32) -> Result<(), ClearCacheError> {
        Err(match code {
            0 => return Ok(()),
            1 => Self::Internal,
            2 => Self::Throttled,
            other => Self::Unknown(other),
        })
    }
}
