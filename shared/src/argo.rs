//! Argo Workflows types and the renderer from a `Plan` to a `WorkflowTemplate`.
