"""Operations on top of the network core: echo, find (and, later, retrieve jobs)."""
