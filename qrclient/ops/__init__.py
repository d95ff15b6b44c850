"""DIMSE services on an open association: echo, find, get, move, cancel, storing, store_scu,
worklist, and the query they send."""
