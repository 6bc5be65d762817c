"""The local cloud: moto in-process with the real template, ASL and handlers (see ``cloud``)."""
