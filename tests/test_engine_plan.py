"""An engine is planned once (gpt2.engines.plan): the choice and its checks in one place, typed
errors, the command line's spelling of options, the server's preferences; the constructors take
the plan as given; the contract says what callers may ask an engine."""

import pytest

from gpt2.engines import ENGINE_CLASSES, ENGINES, EnginePlan, PlanError, build_engine, plan_engine
from gpt2.errors import Gpt2Error


@pytest.mark.parametrize(
    "engine, options, message",
    [
        ("numpy", {"dtype": "float16"}, "the numpy engine runs in float32 | float64 | bfloat16, not 'float16'"),
        ("pure", {"dtype": "float32"}, "the pure engine has no option 'dtype'"),
        ("numpy", {"threads": 0}, "threads must be an integer >= 1, got 0"),
        ("torch", {"kernel": "fast"}, "unknown kernel 'fast'"),
        ("torch", {"device": "tpu"}, "unknown device 'tpu'"),
        ("numpy", {"device": "cuda"}, "device cuda runs the torch engine; the numpy engine runs on the cpu"),
        ("numpy", {"quantize": "int4"}, "unknown quantization 'int4'; choose int8"),
        ("numpy", {"native": True, "dtype": "float64"}, "native=True needs dtype float32 or bfloat16"),
        ("numpy", {"dequantize": "never"}, "dequantize must be load | layer"),
        ("pure", {"storage": "disk"}, "storage must be auto or one of fast, compact, fp16"),
        ("pure", {"workers": 0}, "workers must be an integer >= 1"),
        ("tpu", {}, "unknown engine 'tpu'"),
    ],
)
def test_every_bad_choice_is_a_typed_error_from_the_plan(engine, options, message):
    with pytest.raises(Gpt2Error, match=message.replace("|", r"\|").replace("(", r"\(")) as caught:
        plan_engine(engine, **options)
    assert isinstance(caught.value, PlanError) or engine == "tpu"


def test_the_command_line_spells_options_as_flags():
    with pytest.raises(PlanError, match="^--threads must be >= 1, got 0$"):
        plan_engine("numpy", threads=0, flags="--")
    with pytest.raises(PlanError, match="^--threads applies to the numpy and torch engines, not pure$"):
        plan_engine("pure", threads=2, flags="--")
    with pytest.raises(PlanError, match="^--device mps runs the torch engine; the pure engine runs on the cpu$"):
        plan_engine("pure", device="mps", flags="--")


def test_a_plan_fills_in_the_defaults_and_gives_back_only_what_was_asked():
    plan = plan_engine("numpy", threads=2, device="cpu")
    assert plan == EnginePlan("numpy", "float32", threads=2)  # every engine runs on the cpu: no device
    assert plan.keywords() == {"threads": 2}
    assert plan_engine("numpy", **plan_engine("numpy", dtype="bfloat16", quantize="int8").keywords()) == (
        plan_engine("numpy", dtype="bfloat16", quantize="int8")
    )
    assert plan_engine("pure").keywords() == {}


def test_a_server_plans_the_engine_every_command_plans_and_the_kernel_that_batches_best():
    pytest.importorskip("torch")
    assert plan_engine(serving=True, device="cpu").engine == plan_engine(device="cpu").engine
    assert plan_engine("torch", serving=True, device="cpu").kernel == "batched"
    assert plan_engine("torch", serving=True, kernel="blas").kernel == "blas"  # a named kernel stays
    assert plan_engine("numpy", serving=True).kernel is None


def test_constructors_trust_the_plan(kit, monkeypatch):
    """Built from a plan, no engine plans (checks) again."""
    import gpt2.engines.numpy_engine as numpy_engine
    import gpt2.engines.pure.engine as pure_engine

    plans = {name: plan_engine(name) for name in ("pure", "numpy")}

    def refuse(*args, **kwargs):
        raise AssertionError("planned twice")

    monkeypatch.setattr(pure_engine, "plan_engine", refuse)
    monkeypatch.setattr(numpy_engine, "plan_engine", refuse)
    for plan in plans.values():
        engine = build_engine(plan, kit.config, kit.params)
        assert engine.name == plan.engine
        engine.close()


def test_the_registry_names_each_engine_class_once():
    assert set(ENGINE_CLASSES) == set(ENGINES)
    assert ENGINE_CLASSES["pure"]().__name__ == "PureEngine"
    assert ENGINE_CLASSES["numpy"]().__name__ == "NumpyEngine"


@pytest.mark.parametrize("name", ["pure", "numpy", "torch"])
def test_every_engine_keeps_the_whole_contract(kit, name):
    """What callers ask an engine (notices, the KV bytes a position takes, free device memory, -v
    lines) is in the contract, so nothing probes for attributes."""
    if name == "torch":
        pytest.importorskip("torch")
    options = {"device": "cpu"} if name == "torch" else {}
    engine = build_engine(plan_engine(name, **options), kit.config, kit.params)
    c = kit.config
    itemsize = {"pure": 8, "numpy": 4, "torch": 4}[name]
    assert engine.kv_bytes_per_position == 2 * c.n_layer * c.n_embd * itemsize
    assert all(isinstance(n, str) for n in engine.notices)
    assert all(isinstance(line, str) for line in engine.details())
    assert engine.free_memory() is None  # the host's memory: the caller asks the OS
    engine.close()


def test_no_caller_probes_an_engine_for_attributes():
    """Outside gpt2.engines, code asks an engine what the contract names (gpt2.engines.base), never
    `hasattr(engine, ...)` or `getattr(engine, ...)` for something it may or may not have."""
    import re
    from pathlib import Path

    import gpt2

    root = Path(gpt2.__file__).parent
    probe = re.compile(r"\b(?:hasattr|getattr)\(\s*(?:self\.)?(?:engine|\w+_engine)\b")
    found = [
        f"{path.relative_to(root)}:{n}: {line.strip()}"
        for path in sorted(root.rglob("*.py"))
        if "engines" not in path.relative_to(root).parts
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if probe.search(line)
    ]
    assert not found, "\n".join(found)
