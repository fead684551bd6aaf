"""Files on records: storage, uploads, downloads, file tokens, and their clean-up."""

DELETE_TASK = "files.delete"
SWEEP_TASK = "files.sweep"
