"""Which methods the RPC API has, read from the code, so that a method
added later is fuzzed (or the suite says it lacks a model) without
anyone remembering to list it here.

Two sources, which a test compares: the names the client sends
(``.call(ctxt, '<method>', ...)`` in compute_agent/rpcapi.py and, for
version discovery, rpcapi_versions.py) and the
manager's methods marked ``@remotable``, whose signatures say which
arguments are required.
"""

import ast
import dataclasses
import inspect

from compute_agent import manager
from compute_agent import rpcapi
from compute_agent import rpcapi_versions


@dataclasses.dataclass(frozen=True)
class Signature:
    name: str
    params: tuple   # argument names after ctxt, in order
    required: frozenset


def _parse(module):
    return ast.parse(inspect.getsource(module))


def client_methods():
    """The method names compute_agent.rpcapi sends."""
    names = set()
    for node in (node for module in (rpcapi, rpcapi_versions)
                 for node in ast.walk(_parse(module))):
        if isinstance(node, ast.Call) and \
                isinstance(node.func, ast.Attribute) and \
                node.func.attr in ('call', 'cast') and len(node.args) >= 2 \
                and isinstance(node.args[1], ast.Constant) and \
                isinstance(node.args[1].value, str):
            names.add(node.args[1].value)
    return names


def _is_remotable(decorator):
    return (isinstance(decorator, ast.Name) and
            decorator.id == 'remotable') or \
        (isinstance(decorator, ast.Attribute) and
         decorator.attr == 'remotable')


def remotable_methods():
    """name -> Signature of every @remotable method of the endpoints."""
    modules = {inspect.getmodule(cls) for cls in manager.ENDPOINT_CLASSES}
    methods = {}
    for module in modules:
        for node in ast.walk(_parse(module)):
            if not isinstance(node, ast.FunctionDef) or \
                    not any(map(_is_remotable, node.decorator_list)):
                continue
            positional = [arg.arg for arg in node.args.args][2:]
            with_default = len(node.args.defaults)
            required = positional[:len(positional) - with_default]
            keyword_only = [arg.arg for arg in node.args.kwonlyargs]
            required += [name for name, default in zip(
                keyword_only, node.args.kw_defaults) if default is None]
            methods[node.name] = Signature(
                node.name, tuple(positional + keyword_only),
                frozenset(required))
    return methods
