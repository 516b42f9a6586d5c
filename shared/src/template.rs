//! Self-modification: render, check, apply (server-side apply) and roll back the live WorkflowTemplate.
