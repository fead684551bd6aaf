"""Files on records: storage, uploads, downloads, file tokens, and their clean-up."""
