"""The pure evaluation engine: plain data in, plain data out; no I/O, no clock.

    flags = compile_flags([definition, ...])
    result = evaluate(flags, "new-billing", Context(groups={"project": "p1"}, now=now), resolver)
"""

from .compile import CompiledFlag, compile_flag, compile_flags, validate_flag
from .context import Context, FlagResult, NullResolver, Resolver
from .evaluate import Evaluation, evaluate, evaluate_all
from .explain import explain
from .hashing import bucket, variant_target
from .hierarchy import find_group_key
from .operators import ALIASES, OPERATORS, FilterError

__all__ = [
    "ALIASES", "OPERATORS", "CompiledFlag", "Context", "Evaluation", "FilterError", "FlagResult",
    "NullResolver", "Resolver", "bucket", "compile_flag", "compile_flags", "evaluate",
    "evaluate_all", "explain", "find_group_key", "validate_flag", "variant_target",
]
