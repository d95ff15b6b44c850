"""Jobs: what a face asks for, built from the services in :mod:`qrclient.ops`.

``retrieve`` plans and fetches a request into the store (or to another AE), ``doctor``
diagnoses a peer, ``send`` sends files by C-STORE in parallel, ``cohort`` retrieves a
list of studies as a durable job in the store.
"""
