"""A single-producer, single-consumer byte ring in memory shared by two processes.

The inference process writes one frame per decorated call; the recorder process
(:mod:`._recorder_child`) reads them. Writing a frame is a slice assignment and two
integer stores, with no system call and no lock shared with the other process, so it
costs the caller about a microsecond and never waits for the reader: when the ring is
full the frame is refused and the caller counts it as dropped.

Layout: a 64-byte header (``head``: bytes ever published by the writer; ``tail``: bytes
ever consumed by the reader; ``ack``: the last flush request the reader completed),
then ``capacity`` bytes of frames. A frame is ``length (u32), crc32 (u32), payload``,
padded to 8 bytes; a frame that does not fit before the end of the buffer is preceded
by a wrap marker and starts again at offset 0. The writer stores the payload, then the
frame header, then ``head``; the reader checks each frame's CRC, so that on a machine
whose memory order lets ``head`` be seen before the payload it waits and reads the
frame again instead of reading torn bytes.
"""

from __future__ import annotations

import mmap
import os
import struct
import tempfile
import zlib
from typing import Any

HEADER = 64
_U64 = struct.Struct("<Q")
_FRAME = struct.Struct("<II")
_WRAP = 0xFFFFFFFF
_HEAD, _TAIL, _ACK = 0, 8, 16

DEFAULT_CAPACITY = 8 * 1024 * 1024
"""Bytes of frames the ring holds: about 5,000 calls of 20 detections (containers often cap /dev/shm at 64 MiB)."""


def _pad(n: int) -> int:
    return (n + 7) & ~7


def create_ring_fd(capacity: int) -> int:
    """A file descriptor of ``HEADER + capacity`` zeroed bytes that a child process can map.

    An anonymous memory file where the system has one (nothing to clean up, nothing
    left behind if either process is killed), else an unlinked temporary file.
    """
    size = HEADER + capacity
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is not None:
        fd: int = memfd_create("detwatch-recorder", 0)
    else:  # pragma: no cover - non-Linux
        with tempfile.TemporaryFile() as handle:
            fd = os.dup(handle.fileno())
    os.ftruncate(fd, size)
    return fd


class Ring:
    """One end of the ring, mapped from ``fd``; the writer and the reader use different methods."""

    def __init__(self, fd: int, capacity: int) -> None:
        if capacity % 8 or capacity < 4096:
            raise ValueError(f"capacity: must be a multiple of 8 and at least 4096, got {capacity}")
        self.fd = fd
        self.capacity = capacity
        self.map = mmap.mmap(fd, HEADER + capacity)
        self._head: int = _U64.unpack_from(self.map, _HEAD)[0]
        self._tail: int = _U64.unpack_from(self.map, _TAIL)[0]

    # ------------------------------------------------------------ writer

    def prefault(self) -> None:
        """Touch every page once now (a few milliseconds, once), not on the calls that first write to it.

        A memory file's pages are allocated, and mapped into this process, on first
        write: without this, every third call of the first few thousand paid a page
        fault (~10 µs) on the caller's thread.
        """
        mem = self.map
        for offset in range(HEADER, HEADER + self.capacity, mmap.PAGESIZE):
            mem[offset] = 0

    def write(self, payload: bytes) -> bool:
        """Publish one frame; ``False`` (nothing written) when it does not fit now."""
        return self.write_parts((payload,))

    def write_parts(self, parts: tuple[Any, ...]) -> bool:
        """Publish one frame made of ``parts`` (``bytes`` or C-contiguous arrays, copied as they lie in memory).

        As :meth:`write`, without joining the parts first. Raises ``ValueError`` or
        ``BufferError`` (nothing published) for a part whose memory is not one block.
        """
        crc = 0
        sizes = []
        for part in parts:
            crc = zlib.crc32(part, crc)  # raises for a part that is not one contiguous block
            sizes.append(len(part) if type(part) is bytes else part.nbytes)
        length = sum(sizes)
        size = _FRAME.size + _pad(length)
        capacity = self.capacity
        if size > capacity // 2:
            return False
        mem = self.map
        head = self._head
        tail = _U64.unpack_from(mem, _TAIL)[0]
        pos = head % capacity
        skip = capacity - pos if capacity - pos < size else 0
        if head + skip + size - tail > capacity:
            return False
        if skip:
            _FRAME.pack_into(mem, HEADER + pos, _WRAP, 0)
            head += skip
            pos = 0
        start = HEADER + pos + _FRAME.size
        for part, part_size in zip(parts, sizes, strict=True):
            end = start + part_size
            mem[start:end] = part
            start = end
        _FRAME.pack_into(mem, HEADER + pos, length, crc)
        head += size
        _U64.pack_into(mem, _HEAD, head)
        self._head = head
        return True

    def used(self) -> int:
        """Bytes published and not yet consumed."""
        tail: int = _U64.unpack_from(self.map, _TAIL)[0]
        return self._head - tail

    def ack(self) -> int:
        """The last flush request the reader completed."""
        return int(_U64.unpack_from(self.map, _ACK)[0])

    # ------------------------------------------------------------ reader

    def read(self, limit: int = 256) -> list[bytes]:
        """Up to ``limit`` frames, consumed (stopping early at a frame published but not yet readable whole)."""
        mem = self.map
        capacity = self.capacity
        head = _U64.unpack_from(mem, _HEAD)[0]
        tail = self._tail
        frames: list[bytes] = []
        while tail < head and len(frames) < limit:
            pos = tail % capacity
            length, crc = _FRAME.unpack_from(mem, HEADER + pos)
            if length == _WRAP:
                tail += capacity - pos
                continue
            start = HEADER + pos + _FRAME.size
            if start + length > HEADER + capacity:
                break  # a header not yet written (or torn): read again later
            payload = mem[start : start + length]
            if zlib.crc32(payload) != crc:
                break
            frames.append(payload)
            tail += _FRAME.size + _pad(length)
        # Consumed before it is processed: a frame that kills the recorder is not read again.
        self._tail = tail
        _U64.pack_into(mem, _TAIL, tail)
        return frames

    def set_ack(self, seq: int) -> None:
        _U64.pack_into(self.map, _ACK, seq)

    def close(self) -> None:
        self.map.close()
