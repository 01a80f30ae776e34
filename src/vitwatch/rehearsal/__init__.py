"""The rehearsal of the real run: full-size stand-ins of every download, served by a loopback
mirror of the real hosts, and notebooks 02-05 executed through the ``quick`` code path.

- :mod:`.artifacts`: the stand-in files, in the real formats, generated once and cached;
- :mod:`.server`: the HTTP mirror (``/<host>/<path>``, Range requests, redirect chains);
- :mod:`.run`: ``make rehearsal`` / ``vitwatch rehearsal``.
"""
