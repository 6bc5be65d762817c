"""The workflows' steps and their typed state models (see ``steps`` and ``models``)."""
