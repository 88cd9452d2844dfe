"""The publish stream's bytes cut into parts: the module first, then each template file in the header's
order. A client may cut chunks anywhere (one chunk may end one part and start the next); each part reads
exactly its declared size and leaves the rest for the next."""

from __future__ import annotations

from collections.abc import AsyncIterator

from services.common.errors import InvalidArgument

MAX_CHUNK_BYTES = 1024 * 1024


class PartStream:
    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = aiter(chunks)
        self._held = b""
        self._ended = False

    async def _next(self) -> bytes | None:
        if self._ended:
            return None
        try:
            chunk = await anext(self._chunks)
        except StopAsyncIteration:
            self._ended = True
            return None
        if len(chunk) > MAX_CHUNK_BYTES:
            raise InvalidArgument(
                f"a chunk of {len(chunk)} bytes exceeds the {MAX_CHUNK_BYTES}-byte chunk limit", field="chunk"
            )
        return chunk

    async def part(self, size: int) -> AsyncIterator[bytes]:
        """Yield the next `size` bytes in pieces; fewer if the stream ends first (the caller counts)."""
        remaining = size
        while remaining > 0:
            if not self._held:
                chunk = await self._next()
                if chunk is None:
                    return
                self._held = chunk
            piece, self._held = self._held[:remaining], self._held[remaining:]
            remaining -= len(piece)
            yield piece

    async def has_more(self) -> bool:
        """True when bytes arrived beyond every declared part (reads at most one more chunk)."""
        if self._held:
            return True
        while (chunk := await self._next()) is not None:
            if chunk:
                self._held = chunk
                return True
        return False
