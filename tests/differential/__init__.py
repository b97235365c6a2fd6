"""Issue 15: a differential oracle that checks weightguard's approvals against the real loaders."""
