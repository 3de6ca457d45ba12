"""Learning from a repository's own history: bug-fix mining, the per-repository adapter, and
`alpine-lsp learn`. Uses the engine's score cache and the model API; imports no LSP code."""
