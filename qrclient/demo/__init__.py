"""The built-in demo PACS: a sample archive served by an embedded Q/R SCP on loopback.

``sample`` generates the archive, ``catalogue`` answers queries against it, ``server``
serves it with pynetdicom's server side (threads are fine here: the demo is not the
fast path), ``synthetic`` is the generator it shares with the test fixtures.
"""
