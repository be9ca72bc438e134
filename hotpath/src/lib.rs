//! santad's engine (filled by the "Workspace and the hotpath engine" issue).
