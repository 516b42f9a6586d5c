//! GitHub webhook intake: request decoding, signature checks, event filters, the Workflow to create.
