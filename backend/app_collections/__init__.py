"""Your collections. Every module here that defines a `Collection` is served under /collections.

`litebase new collection NAME --field title:str` writes a new module (and its migration).
"""
