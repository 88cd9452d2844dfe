"""Image fixtures: our own dockerd (images/dockerd.sh) and the images `make images` built.

The daemon is started if it is not running and stopped at the end of the session only if this
session started it (its stop also unmounts the netns files it leaves under build/docker/exec).
Every container a test starts carries a label unique to the session and is removed at the end,
whatever happened. The images must exist: `make test-images` (or `make images`) builds them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from mesh.containers import Daemon, image_tag, missing_images

SESSION_LABEL = f"tests-{os.getpid()}"


@pytest.fixture(scope="session")
def daemon() -> Iterator[Daemon]:
    d = Daemon()
    started = not d.running()
    if started:
        d.start()
    try:
        missing = missing_images(d, image_tag())
        if missing:
            pytest.fail(f"images not built: {', '.join(missing)}; run `make images`")
        yield d
    finally:
        d.remove_labelled(SESSION_LABEL)
        if started:
            d.stop()


@pytest.fixture(scope="session")
def tag() -> str:
    return image_tag()
