"""exec in the model against real processes stopped at their first instruction.

Every layout test runs the same program with the same argv, envp and RLIMIT_STACK twice: for real
(``vmkit.native.entry_state``: ptrace-stopped right after execve, ASLR off) and in the model
(``sim.Kernel(host_files=True).exec``), and wants the model's maps text byte for byte and its
``brk(0)`` equal to the real ``start_brk``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import vmkit
from vmkit import native, sim
from vmkit.sim.binfmt_elf import headers_extent
from vmkit.sim.exec import STACK_TOP
from vmkit.sim.kernel import RLIM_INFINITY

PYENV_PYTHON = "/root/.pyenv/versions/3.11.7/bin/python3.11"
HOST_BINARIES = [PYENV_PYTHON, "/usr/bin/python3", "/usr/bin/ls", "/usr/bin/cat", "/usr/bin/node",
                 "/usr/bin/perl", "/usr/bin/sqlite3"]

PROGRAM = r"""
#include <stdio.h>
#include <sys/mman.h>
int big[100000];   /* a bss beyond the last file page */
int main(void) {
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    printf("%p\n", p);
    return big[0];
}
"""

BIG_PROGRAM = r"""
char data[3 << 20] = {1};   /* a 3 MiB data segment: the image span is THP-aligned */
static char bss[5 << 20];
int main(void) { return data[0] + bss[7]; }
"""


def _java() -> str | None:
    found = shutil.which("java")
    return os.path.realpath(found) if found else None


def _our_stack_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_STACK)[0]


def _model_limit(limit: int) -> int:
    return RLIM_INFINITY if limit == resource.RLIM_INFINITY else limit


def compare(path: str, argv: list[str], envp: list[str], stack_limit: int | None = None) -> sim.Kernel:
    """Asserts that the model's maps and break at entry are the real ones; returns the kernel."""
    real = native.entry_state(path, argv, envp, stack_limit=stack_limit)
    limit = _our_stack_limit() if stack_limit is None else stack_limit
    kernel = sim.Kernel(host_files=True, check_invariants=True, stack_rlimit=_model_limit(limit))
    p = kernel.exec(path, argv, envp)
    assert p.maps() == real.maps
    assert p.brk(0) == real.start_brk
    return kernel


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The test program built static, static-pie, non-PIE dynamic, PIE, and with an executable
    stack (skipped without gcc)."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    directory = tmp_path_factory.mktemp("exec")
    source, big = directory / "m.c", directory / "big.c"
    source.write_text(PROGRAM)
    big.write_text(BIG_PROGRAM)
    align_2m = "-Wl,-z,max-page-size=0x200000"
    variants = {"static": ["-static"], "static-pie": ["-static-pie"], "no-pie": ["-no-pie"],
                "pie": ["-pie", "-fPIE"], "execstack": ["-z", "execstack"],
                "pie-2m-aligned": [align_2m], "static-pie-2m-aligned": ["-static-pie", align_2m],
                "big-static-pie": ["-static-pie", str(big)], "big-pie": [str(big)]}
    out = {}
    for name, flags in variants.items():
        target = directory / name
        sources = [] if str(big) in flags else [str(source)]
        result = subprocess.run(["gcc", "-O2", *flags, "-o", str(target), *sources],
                                capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"gcc {' '.join(flags)} failed: {result.stderr.strip()[:200]}")
        out[name] = str(target)
    return out


# --- layouts ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", HOST_BINARIES + ["java"])
def test_host_binary_layout(path: str) -> None:
    if path == "java":
        path = _java() or "/nonexistent/java"
    if not os.path.exists(path):
        pytest.skip(f"{path} is not installed")
    compare(path, [os.path.basename(path), "--version"], ["HOME=/root", "LANG=C.UTF-8"])


@pytest.mark.parametrize("variant", ["static", "static-pie", "no-pie", "pie", "execstack",
                                     "pie-2m-aligned", "static-pie-2m-aligned", "big-static-pie",
                                     "big-pie"])
def test_built_binary_layout(built: dict[str, str], variant: str) -> None:
    compare(built[variant], [variant], ["A=1"])


def test_execstack_gives_an_executable_stack(built: dict[str, str]) -> None:
    kernel = compare(built["execstack"], ["x"], [])
    (stack,) = [line for line in kernel.tasks[min(kernel.tasks)].mm.vmas if line.end == STACK_TOP]
    assert stack.flags & 0x4  # VM_EXEC


def test_static_pie_break_starts_at_elf_et_dyn_base(built: dict[str, str]) -> None:
    """No CONFIG_COMPAT_BRK: a static PIE's break is ELF_ET_DYN_BASE, page-aligned, even with ASLR
    off (load_elf_binary's brk_moved)."""
    assert native.entry_state(built["static-pie"], ["s"], []).start_brk == 0x555555555000
    compare(built["static-pie"], ["s"], [])


@pytest.mark.parametrize("env_bytes", [10, 4000, 4090, 4100, 9000, 30000, 100000])
def test_stack_grows_over_the_pages_of_the_strings(env_bytes: int) -> None:
    """The stack is the pages the filename, envp and argv strings touch below STACK_TOP - 8, plus
    128 KiB (setup_arg_pages): 1, 2 and many pages of strings."""
    compare("/usr/bin/cat", ["cat"], ["X=" + "a" * env_bytes])


@pytest.mark.parametrize("limit", [resource.RLIM_INFINITY, 64 << 10, 100000, 300 << 10, 1 << 20])
@pytest.mark.parametrize("env_bytes", [100, 20000, 60000])
def test_stack_limit(limit: int, env_bytes: int) -> None:
    """The growth is capped by RLIMIT_STACK (rounded down to a page); unlimited means +128 KiB;
    mmap_base follows the limit too."""
    compare("/usr/bin/ls", ["ls", "-l"], ["A=" + "b" * env_bytes], stack_limit=limit)


def test_strings_larger_than_a_small_stack_limit_fail_with_e2big() -> None:
    """With RLIMIT_STACK 16 KiB, get_arg_page cannot grow the stack over 20 kB of strings."""
    envp = ["A=" + "b" * 20000]
    with pytest.raises(OSError) as real:
        native.entry_state("/usr/bin/ls", ["ls"], envp, stack_limit=16 << 10)
    kernel = sim.Kernel(host_files=True, stack_rlimit=16 << 10)
    with pytest.raises(OSError) as model:
        kernel.exec("/usr/bin/ls", ["ls"], envp)
    assert real.value.errno == model.value.errno == errno.E2BIG
    assert not kernel.tasks


def test_empty_argv() -> None:
    compare("/usr/bin/cat", [], [])


AT_RANDOM = 25


@pytest.mark.parametrize("path", ["/usr/bin/ls", "/usr/bin/python3", "static", "static-pie"])
def test_initial_stack_frame(built: dict[str, str], path: str) -> None:
    """create_elf_tables: the same stack pointer and the same bytes from it to the stack's end
    (argc, argv, envp, auxv, platform string, strings), but for the 16 AT_RANDOM bytes."""
    path = built.get(path, path)
    if not os.path.exists(path):
        pytest.skip(f"{path} is not installed")
    argv, envp = ["prog", "-x", "a b"], ["HOME=/root", "EMPTY=", "Z=" + "z" * 5000]
    real = native.entry_state(path, argv, envp)
    kernel = sim.Kernel(host_files=True, check_invariants=True, stack_rlimit=_our_stack_limit())
    p = kernel.exec(path, argv, envp)
    start = p.task.mm.start_stack
    assert start == real.start_stack
    model = bytearray(p.read(start, len(real.stack)))
    expected = bytearray(real.stack)
    rnd = dict(real.auxv)[AT_RANDOM] - start
    model[rnd:rnd + 16] = expected[rnd:rnd + 16] = bytes(16)
    assert model == expected


@pytest.mark.parametrize("path", ["/usr/bin/ls", "no-pie", "static"])
def test_resident_pages_and_status_at_entry(built: dict[str, str], path: str) -> None:
    """Only the pages the kernel wrote are present at entry: the stack frame's and padzero's
    private copy of the last data page.  VmExe/VmLib split the executable mappings as task_mem."""
    path = built.get(path, path)
    real = native.entry_state(path, ["x"], ["A=1"])
    p = sim.Kernel(host_files=True, stack_rlimit=_our_stack_limit()).exec(path, ["x"], ["A=1"])

    def rss(text: str) -> list[str]:
        return [line for line in text.splitlines() if line.startswith(("Rss:", "Anonymous:", "Private_Dirty:"))]

    assert rss(p.smaps()) == rss(real.smaps)
    status = p.status()
    for key in ("VmSize", "VmRSS", "RssAnon", "RssFile", "VmData", "VmStk", "VmExe", "VmLib"):
        assert status[key] == real.status[key], key


# --- errors -------------------------------------------------------------------------------------


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path


def _both_fail(path: str) -> int:
    with pytest.raises(OSError) as real:
        native.entry_state(path, ["x"], [])
    kernel = sim.Kernel(host_files=True)
    with pytest.raises(OSError) as model:
        kernel.exec(path, ["x"], [])
    assert model.value.errno == real.value.errno
    assert not kernel.tasks
    return int(real.value.errno)


def test_enoent(scratch: Path) -> None:
    assert _both_fail(str(scratch / "missing")) == errno.ENOENT
    with pytest.raises(FileNotFoundError):
        sim.Kernel().exec("/usr/bin/ls", ["ls"], [])  # not in the model and no host_files


def test_enotdir() -> None:
    assert _both_fail("/usr/bin/ls/x") == errno.ENOTDIR


def test_eacces_without_exec_permission(scratch: Path) -> None:
    target = scratch / "noexec"
    shutil.copy("/usr/bin/true", target)
    target.chmod(0o644)
    assert _both_fail(str(target)) == errno.EACCES


def test_eacces_for_a_directory(scratch: Path) -> None:
    assert _both_fail(str(scratch)) == errno.EACCES


def test_enoexec_for_a_text_file(scratch: Path) -> None:
    target = scratch / "text"
    target.write_text("hello, not a program\n")
    target.chmod(0o755)
    assert _both_fail(str(target)) == errno.ENOEXEC


def test_enoexec_for_a_wrong_machine(scratch: Path) -> None:
    image = bytearray(Path("/usr/bin/true").read_bytes())
    image[18:20] = (183).to_bytes(2, "little")  # EM_AARCH64
    target = scratch / "arm"
    target.write_bytes(bytes(image))
    target.chmod(0o755)
    assert _both_fail(str(target)) == errno.ENOEXEC


SCRIPTS = {
    "plain": "#!/bin/sh\necho hi\n",
    "argument": "#! /bin/sh   -e  -x \nexit 0\n",
    "tabs, env": "#!\t/usr/bin/env \t python3\n",
    "no newline": "#!/bin/sh",
}


@pytest.mark.parametrize("text", SCRIPTS.values(), ids=SCRIPTS.keys())
def test_script(scratch: Path, text: str) -> None:
    """binfmt_script: argv[0] is replaced by the interpreter, its argument and the script path,
    then the interpreter is loaded: same maps, same stack frame."""
    target = scratch / "script"
    target.write_text(text)
    target.chmod(0o755)
    argv, envp = ["name", "arg1"], ["A=1"]
    real = native.entry_state(str(target), argv, envp)
    kernel = sim.Kernel(host_files=True, check_invariants=True, stack_rlimit=_our_stack_limit())
    p = kernel.exec(str(target), argv, envp)
    assert p.maps() == real.maps
    start = p.task.mm.start_stack
    assert start == real.start_stack
    model, expected = bytearray(p.read(start, len(real.stack))), bytearray(real.stack)
    rnd = dict(real.auxv)[AT_RANDOM] - start
    model[rnd:rnd + 16] = expected[rnd:rnd + 16] = bytes(16)
    assert model == expected


def test_script_with_a_missing_interpreter(scratch: Path) -> None:
    target = scratch / "script"
    target.write_text(f"#!{scratch}/missing\n")
    target.chmod(0o755)
    assert _both_fail(str(target)) == errno.ENOENT


def test_script_without_an_interpreter_name(scratch: Path) -> None:
    """"#!" alone names "", which a kernel path walk resolves to the cwd: a directory, EACCES."""
    target = scratch / "script"
    target.write_text("#!")
    target.chmod(0o755)
    assert _both_fail(str(target)) == errno.EACCES


@pytest.mark.parametrize("levels, result", [(5, 0), (6, errno.ELOOP)])
def test_script_nesting_depth(scratch: Path, levels: int, result: int) -> None:
    """exec_binprm allows five script rewrites before a binary; a sixth is ELOOP."""
    shutil.copy("/usr/bin/true", scratch / f"s{levels}")
    for i in range(levels):
        (scratch / f"s{i}").write_text(f"#!{scratch}/s{i + 1}\n")
        (scratch / f"s{i}").chmod(0o755)
    if result:
        assert _both_fail(str(scratch / "s0")) == result
    else:
        compare(str(scratch / "s0"), ["s0"], [])


# --- the file system ------------------------------------------------------------------------------


def test_import_host_is_lazy_and_has_the_host_identity() -> None:
    st = os.stat("/usr/bin/ls")
    inode = sim.Kernel().fs.import_host("/usr/bin/ls")
    assert not dict.keys(inode.disk)  # nothing read yet
    assert inode.ino == st.st_ino and inode.size == st.st_size
    assert inode.maps_dev == f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}"
    assert inode.read(16, 4096 + 3) == Path("/usr/bin/ls").read_bytes()[4099:4115]
    assert list(dict.keys(inode.disk)) == [1]


def test_exec_from_rebuilt_images_needs_only_the_first_page() -> None:
    """The replay's path: images holding only their first page (headers, program headers,
    PT_INTERP), at the paths and with the identities the trace gives, and the loader's symlink."""
    real = native.entry_state("/usr/bin/ls", ["ls"], ["A=1"])
    kernel = sim.Kernel(check_invariants=True)
    for path in ("/usr/bin/ls", "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"):
        st = os.stat(path)
        head = Path(path).read_bytes()[:4096]
        inode = kernel.fs.add_image(path, st.st_size, head, dev=(os.major(st.st_dev), os.minor(st.st_dev)),
                                    ino=st.st_ino)
        assert headers_extent(inode) <= 4096
    kernel.fs.symlink("/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", "/lib64/ld-linux-x86-64.so.2")
    p = kernel.exec("/usr/bin/ls", ["ls"], ["A=1"])
    assert p.maps() == real.maps
    assert p.brk(0) == real.start_brk


@pytest.mark.parametrize("path", HOST_BINARIES + ["java"])
def test_headers_fit_in_the_first_page(path: str) -> None:
    if path == "java":
        path = _java() or "/nonexistent/java"
    if not os.path.exists(path):
        pytest.skip(f"{path} is not installed")
    assert headers_extent(sim.Kernel().fs.import_host(path)) <= 4096


# --- after exec -----------------------------------------------------------------------------------


def _run_without_aslr(path: str) -> str:
    libc = ctypes.CDLL(None, use_errno=True)

    def no_aslr() -> None:
        libc.personality(libc.personality(0xFFFFFFFF) | 0x0040000)

    return subprocess.run([path], capture_output=True, text=True, preexec_fn=no_aslr).stdout


def test_first_mmap_after_exec_lands_where_the_kernel_puts_it(built: dict[str, str]) -> None:
    """The static program prints the address of its first mmap(NULL, 4096) (its startup maps
    nothing before); the model's first such mmap after exec gives the same address."""
    printed = int(_run_without_aslr(built["static"]).strip(), 16)
    kernel = sim.Kernel(host_files=True, check_invariants=True, stack_rlimit=_our_stack_limit())
    p = kernel.exec(built["static"], [built["static"]], [])
    addr = p.mmap(None, 4096, vmkit.PROT_READ | vmkit.PROT_WRITE, vmkit.MAP_PRIVATE | vmkit.MAP_ANONYMOUS)
    assert addr == printed


def test_execve_replaces_the_address_space_in_place() -> None:
    kernel = sim.Kernel(host_files=True, check_invariants=True)
    p = kernel.spawn()
    keep = p.open("/tmp/kept", os.O_RDWR | os.O_CREAT)
    gone = p.open("/tmp/closed", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
    p.mmap(None, 8192, vmkit.PROT_READ | vmkit.PROT_WRITE, vmkit.MAP_PRIVATE | vmkit.MAP_ANONYMOUS)
    p.mlockall(vmkit.MCL_CURRENT | vmkit.MCL_FUTURE)
    p.setrlimit(resource.RLIMIT_STACK, (64 << 10, -1))
    pid = p.pid
    p.execve("/usr/bin/cat", ["cat"], ["A=1"])
    assert p.pid == pid
    assert p.maps() == native.entry_state("/usr/bin/cat", ["cat"], ["A=1"], stack_limit=64 << 10).maps
    assert p.status()["VmLck"] == "0 kB"
    assert p.getrlimit(resource.RLIMIT_STACK) == (64 << 10, -1)
    p.pread(keep, 1, 0)
    with pytest.raises(OSError) as bad:
        p.pread(gone, 1, 0)
    assert bad.value.errno == errno.EBADF
    a = p.mmap(None, 4096, vmkit.PROT_READ | vmkit.PROT_WRITE, vmkit.MAP_PRIVATE | vmkit.MAP_ANONYMOUS)
    p.write(a, b"x")  # not locked: MCL_FUTURE is gone with the old mm
    assert p.status()["VmLck"] == "0 kB"


def test_failed_execve_leaves_the_process_as_it_was() -> None:
    kernel = sim.Kernel(host_files=True)
    p = kernel.spawn()
    before = p.maps()
    with pytest.raises(FileNotFoundError):
        p.execve("/nonexistent", ["x"], [])
    assert p.maps() == before


def test_bss_last_file_page_is_a_private_copy(built: dict[str, str]) -> None:
    """padzero wrote the tail of the last file page of the data segment: it is an anonymous page
    in the file mapping, and zero past the file bytes."""
    kernel = sim.Kernel(host_files=True)
    p = kernel.exec(built["no-pie"], ["x"], [])
    data = [v for v in p.task.mm.vmas if v.file is not None and v.flags & 0x2]
    assert data
    vma = data[-1]
    last = vma.end - 4096
    pte = p.task.mm.pt.get(last >> 12)
    assert pte is not None and pte & 2  # PTE_ANON: a private copy
    assert stat.S_ISREG(vma.file.inode.mode)
