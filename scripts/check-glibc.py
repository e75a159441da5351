#!/usr/bin/env python3
"""Print the newest glibc symbol version an ELF binary needs; fail if it is above the floor.

    scripts/check-glibc.py [--max 2.28] BINARY...

Reads the ELF itself (Python standard library only): the version-needed entries
(`.gnu.version_r`, the same data `objdump -T` / `readelf -V` show) name every GLIBC_x.y the
dynamic linker must find. The section headers are used when present, the PT_DYNAMIC segment
(DT_VERNEED / DT_VERNEEDNUM / DT_STRTAB) otherwise. GLIBC_PRIVATE is ignored.

Exit status: 0 = every binary needs at most the floor (or no glibc at all: static / musl);
1 = some binary needs a newer glibc; 2 = a file could not be read as an ELF.
"""

from __future__ import annotations

import argparse
import re
import struct
import sys

DEFAULT_FLOOR = "2.28"

SHT_GNU_VERNEED = 0x6FFFFFFE
PT_LOAD = 1
PT_DYNAMIC = 2
DT_NULL = 0
DT_STRTAB = 5
DT_VERNEED = 0x6FFFFFFE
DT_VERNEEDNUM = 0x6FFFFFFF

GLIBC_RE = re.compile(r"^GLIBC_(\d+(?:\.\d+)*)$")


class ElfError(Exception):
    pass


class Elf:
    def __init__(self, data: bytes):
        if data[:4] != b"\x7fELF":
            raise ElfError("not an ELF file")
        ei_class, ei_data = data[4], data[5]
        if ei_class not in (1, 2) or ei_data not in (1, 2):
            raise ElfError("unsupported ELF class or byte order")
        self.data = data
        self.is64 = ei_class == 2
        self.end = "<" if ei_data == 1 else ">"
        if self.is64:
            (self.phoff, self.shoff) = self._unpack("QQ", 0x20)
            (self.phentsize, self.phnum, self.shentsize, self.shnum) = self._unpack("HHHH", 0x36)
        else:
            (self.phoff, self.shoff) = self._unpack("II", 0x1C)
            (self.phentsize, self.phnum, self.shentsize, self.shnum) = self._unpack("HHHH", 0x2A)

    def _unpack(self, fmt: str, offset: int) -> tuple:
        fmt = self.end + fmt
        size = struct.calcsize(fmt)
        if offset < 0 or offset + size > len(self.data):
            raise ElfError(f"truncated ELF (read of {size} bytes at {offset:#x})")
        return struct.unpack_from(fmt, self.data, offset)

    def cstr(self, offset: int) -> str:
        if offset < 0 or offset >= len(self.data):
            raise ElfError(f"string offset {offset:#x} out of range")
        end = self.data.find(b"\0", offset)
        return self.data[offset : end if end >= 0 else len(self.data)].decode("utf-8", "replace")

    def sections(self) -> list[dict]:
        out = []
        for i in range(self.shnum if self.shoff else 0):
            base = self.shoff + i * self.shentsize
            if self.is64:
                (_, sh_type, _, _, sh_offset, sh_size, sh_link, sh_info) = self._unpack("IIQQQQII", base)
            else:
                (_, sh_type, _, _, sh_offset, sh_size, sh_link, sh_info) = self._unpack("IIIIIIII", base)
            out.append({"type": sh_type, "offset": sh_offset, "size": sh_size, "link": sh_link, "info": sh_info})
        return out

    def segments(self) -> list[dict]:
        out = []
        for i in range(self.phnum if self.phoff else 0):
            base = self.phoff + i * self.phentsize
            if self.is64:
                (p_type, _, p_offset, p_vaddr, _, p_filesz, _, _) = self._unpack("IIQQQQQQ", base)
            else:
                (p_type, p_offset, p_vaddr, _, p_filesz, _, _, _) = self._unpack("IIIIIIII", base)
            out.append({"type": p_type, "offset": p_offset, "vaddr": p_vaddr, "filesz": p_filesz})
        return out

    def verneed(self, offset: int, count: int, strtab: int) -> list[tuple[str, str]]:
        """(library, version name) pairs from a version-needed table."""
        needs = []
        for _ in range(count):
            (_, vn_cnt, vn_file, vn_aux, vn_next) = self._unpack("HHIII", offset)
            library = self.cstr(strtab + vn_file)
            aux = offset + vn_aux
            for _ in range(vn_cnt):
                (_, _, _, vna_name, vna_next) = self._unpack("IHHII", aux)
                needs.append((library, self.cstr(strtab + vna_name)))
                if vna_next == 0:
                    break
                aux += vna_next
            if vn_next == 0:
                break
            offset += vn_next
        return needs

    def _vaddr_to_offset(self, vaddr: int) -> int:
        for seg in self.segments():
            if seg["type"] == PT_LOAD and seg["vaddr"] <= vaddr < seg["vaddr"] + seg["filesz"]:
                return vaddr - seg["vaddr"] + seg["offset"]
        raise ElfError(f"address {vaddr:#x} is not in a loaded segment")

    def needed_versions(self) -> list[tuple[str, str]]:
        sections = self.sections()
        tables = [s for s in sections if s["type"] == SHT_GNU_VERNEED]
        if tables:
            needs = []
            for table in tables:
                if table["link"] >= len(sections):
                    raise ElfError("version-needed section links to a missing string table")
                needs += self.verneed(table["offset"], table["info"], sections[table["link"]]["offset"])
            return needs
        # No section headers (or none of that type): use the dynamic segment.
        dynamic = [s for s in self.segments() if s["type"] == PT_DYNAMIC]
        if not dynamic:
            return []  # static binary
        entries: dict[int, int] = {}
        fmt, size = ("qQ", 16) if self.is64 else ("iI", 8)
        pos, stop = dynamic[0]["offset"], dynamic[0]["offset"] + dynamic[0]["filesz"]
        while pos + size <= stop:
            tag, value = self._unpack(fmt, pos)
            if tag == DT_NULL:
                break
            entries.setdefault(tag, value)
            pos += size
        if DT_VERNEED not in entries:
            return []
        return self.verneed(
            self._vaddr_to_offset(entries[DT_VERNEED]),
            entries.get(DT_VERNEEDNUM, 0),
            self._vaddr_to_offset(entries[DT_STRTAB]),
        )


def parse_version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def glibc_versions(path: str) -> list[tuple[int, ...]]:
    with open(path, "rb") as f:
        elf = Elf(f.read())
    versions = set()
    for _, name in elf.needed_versions():
        m = GLIBC_RE.match(name)
        if m:
            versions.add(parse_version(m.group(1)))
    return sorted(versions)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max", default=DEFAULT_FLOOR, help=f"newest glibc allowed (default {DEFAULT_FLOOR})")
    parser.add_argument("binaries", nargs="+", metavar="BINARY")
    args = parser.parse_args(argv)
    try:
        floor = parse_version(args.max)
    except ValueError:
        parser.error(f"--max {args.max!r} is not a version like 2.28")

    status = 0
    for path in args.binaries:
        try:
            versions = glibc_versions(path)
        except (OSError, ElfError) as e:
            print(f"{path}: {e}", file=sys.stderr)
            status = max(status, 2)
            continue
        if not versions:
            print(f"{path}: needs no versioned glibc symbols (static or not linked against glibc)")
            continue
        newest = versions[-1]
        shown = "GLIBC_" + ".".join(map(str, newest))
        if newest > floor:
            too_new = ", ".join("GLIBC_" + ".".join(map(str, v)) for v in versions if v > floor)
            print(f"{path}: needs {shown}, newer than the floor GLIBC_{args.max} ({too_new})", file=sys.stderr)
            status = max(status, 1)
        else:
            print(f"{path}: needs at most {shown} (floor GLIBC_{args.max}): ok")
    return status


if __name__ == "__main__":
    sys.exit(main())
