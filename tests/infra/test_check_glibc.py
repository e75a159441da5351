"""scripts/check-glibc.py: passes binaries that need at most the glibc floor, fails newer ones.

Synthetic ELF files (built here, with section headers or with only the dynamic segment) cover
the parser; the machine's own /bin/ls covers a real binary (it needs GLIBC_2.34 on Debian 12).
Set HANDLER_BINARY to also check a built handler (scripts/package.sh checks it anyway).
"""

from __future__ import annotations

import os
import pathlib
import platform
import struct
import subprocess
import sys
import tempfile
import unittest

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHECKER = ROOT / "scripts" / "check-glibc.py"


def _verneed(entries: dict[str, list[str]], dynstr: bytearray) -> bytes:
    """A .gnu.version_r table; names are appended to `dynstr`."""

    def name(text: str) -> int:
        offset = len(dynstr)
        dynstr.extend(text.encode() + b"\0")
        return offset

    out = bytearray()
    libraries = list(entries.items())
    for li, (library, versions) in enumerate(libraries):
        aux_size = 16 * len(versions)
        vn_next = 0 if li == len(libraries) - 1 else 16 + aux_size
        out += struct.pack("<HHIII", 1, len(versions), name(library), 16, vn_next)
        for vi, version in enumerate(versions):
            vna_next = 0 if vi == len(versions) - 1 else 16
            out += struct.pack("<IHHII", 0, 0, 2 + vi, name(version), vna_next)
    return bytes(out)


def synthetic_elf(entries: dict[str, list[str]], with_sections: bool = True) -> bytes:
    """A minimal x86-64 ELF whose only content is a version-needed table."""
    dynstr = bytearray(b"\0")
    verneed = _verneed(entries, dynstr) if entries else b""
    ehdr_size, phdr_size, shdr_size = 64, 56, 64
    body = bytearray()
    base = ehdr_size + 2 * phdr_size  # two program headers right after the ELF header
    dynstr_off = base
    body += dynstr
    verneed_off = base + len(body)
    body += verneed
    # dynamic section: DT_STRTAB, DT_VERNEED, DT_VERNEEDNUM, DT_NULL (vaddr == file offset)
    dynamic_off = base + len(body)
    dyn = [(5, dynstr_off)]
    if entries:
        dyn += [(0x6FFFFFFE, verneed_off), (0x6FFFFFFF, len(entries))]
    dyn += [(0, 0)]
    for tag, value in dyn:
        body += struct.pack("<qQ", tag, value)
    shstrtab = b"\0.dynstr\0.gnu.version_r\0.shstrtab\0"
    shstrtab_off = base + len(body)
    body += shstrtab
    file_size = base + len(body)
    shoff = file_size if with_sections else 0
    shnum = 4 if with_sections else 0
    ehdr = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    ehdr += struct.pack("<HHIQQQIHHHHHH", 3, 62, 1, 0, ehdr_size, shoff, 0, ehdr_size, phdr_size, 2, shdr_size, shnum, 3 if with_sections else 0)
    phdrs = struct.pack("<IIQQQQQQ", 1, 4, 0, 0, 0, file_size, file_size, 0x1000)  # PT_LOAD
    phdrs += struct.pack("<IIQQQQQQ", 2, 4, dynamic_off, dynamic_off, dynamic_off, 16 * len(dyn), 16 * len(dyn), 8)
    data = bytearray(ehdr + phdrs + body)
    if with_sections:
        def shdr(name, sh_type, offset, size, link=0, info=0):
            return struct.pack("<IIQQQQIIQQ", name, sh_type, 0, offset, offset, size, link, info, 1, 0)
        data += shdr(0, 0, 0, 0)
        data += shdr(1, 3, dynstr_off, len(dynstr))  # .dynstr
        data += shdr(9, 0x6FFFFFFE, verneed_off, len(verneed), link=1, info=len(entries))  # .gnu.version_r
        data += shdr(24, 3, shstrtab_off, len(shstrtab))  # .shstrtab
    return bytes(data)


def run(*paths: str, floor: str | None = None) -> subprocess.CompletedProcess:
    args = [sys.executable, str(CHECKER)] + (["--max", floor] if floor else []) + list(paths)
    return subprocess.run(args, capture_output=True, text=True)


class CheckGlibcTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)

    def write(self, name: str, data: bytes) -> str:
        path = os.path.join(self.dir.name, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def test_old_binary_passes_and_reports_the_newest_version(self):
        for with_sections in (True, False):
            path = self.write(f"old-{with_sections}", synthetic_elf({
                "libc.so.6": ["GLIBC_2.2.5", "GLIBC_2.17", "GLIBC_2.28", "GLIBC_PRIVATE"],
                "libm.so.6": ["GLIBC_2.2.5"],
                "ld-linux-x86-64.so.2": ["GLIBC_2.3"],
            }, with_sections=with_sections))
            result = run(path)
            self.assertEqual(result.returncode, 0, result)
            self.assertIn("needs at most GLIBC_2.28", result.stdout)

    def test_binary_needing_a_newer_glibc_fails(self):
        for with_sections in (True, False):
            path = self.write(f"new-{with_sections}", synthetic_elf({
                "libc.so.6": ["GLIBC_2.2.5", "GLIBC_2.29"],
                "libgcc_s.so.1": ["GCC_3.0"],
            }, with_sections=with_sections))
            result = run(path)
            self.assertEqual(result.returncode, 1, result)
            self.assertIn("needs GLIBC_2.29, newer than the floor GLIBC_2.28", result.stderr)
            self.assertEqual(run(path, floor="2.29").returncode, 0)

    def test_version_order_is_numeric_not_textual(self):
        path = self.write("numeric", synthetic_elf({"libc.so.6": ["GLIBC_2.9", "GLIBC_2.10"]}))
        result = run(path, floor="2.9")
        self.assertEqual(result.returncode, 1, result)
        self.assertIn("GLIBC_2.10", result.stderr)

    def test_static_binary_passes(self):
        path = self.write("static", synthetic_elf({}))
        result = run(path)
        self.assertEqual(result.returncode, 0, result)
        self.assertIn("needs no versioned glibc symbols", result.stdout)

    def test_non_elf_is_an_error(self):
        result = run(self.write("script", b"#!/bin/sh\necho hi\n"))
        self.assertEqual(result.returncode, 2, result)

    @unittest.skipUnless(os.path.exists("/bin/ls"), "no /bin/ls")
    def test_this_machines_ls_is_checked_against_its_glibc(self):
        libc, version = platform.libc_ver()
        if libc != "glibc" or tuple(map(int, version.split("."))) <= (2, 28):
            self.skipTest(f"host libc {libc} {version} is not newer than the floor")
        result = run("/bin/ls")
        # /bin/ls on Debian 12 (glibc 2.36) needs GLIBC_2.34.
        self.assertEqual(result.returncode, 1, result)
        self.assertIn("newer than the floor GLIBC_2.28", result.stderr)

    @unittest.skipUnless(os.environ.get("HANDLER_BINARY"), "HANDLER_BINARY not set")
    def test_built_handler_meets_the_floor(self):
        result = run(os.environ["HANDLER_BINARY"])
        self.assertEqual(result.returncode, 0, result)


if __name__ == "__main__":
    unittest.main()
