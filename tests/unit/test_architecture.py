"""doc/source/architecture.rst matches the code where that is cheap to see.

* Every ``compute_agent/<file>.py: <Class.function>`` the document names
  (the steps of its numbered lists among them) exists in that file.
* Its module table names every module of compute_agent/ and gives each a
  layer, and the imports the code makes follow the layers: one way down,
  only virt/libvirt/ imports libvirt, and only cmd/agent.py, the
  composition root, imports virt/libvirt/.
"""

import ast
import os
import re
import sys

import testtools

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), '..', '..'))
DOC = os.path.join(ROOT, 'doc', 'source', 'architecture.rst')
PACKAGE = 'compute_agent'

# Layers from the top; a module may import its own layer and those below.
# virt/libvirt/ implements virt/driver.py, so it sits above virt/ (and the
# composition-root test keeps everything but cmd/agent.py away from it).
# 'shared' modules may be imported from any layer but virt/, and import
# only each other.
RANKS = {'cmd': 0, 'service': 1, 'manager': 2, 'endpoints': 3, 'flows': 4,
         'registries': 5, 'libvirt': 6, 'virt': 7, 'db': 7}
SHARED = 'shared'
COMPOSITION_ROOT = 'compute_agent.cmd.agent'
# What virt/ (driver interface and libvirt driver) may import from the
# rest of the agent besides virt/ itself: leaves that import nothing of
# the agent (the crash tests' failpoints sit inside the power-off wait;
# the libvirt driver runs its blocking calls and its native event thread
# through concurrency).
VIRT_MAY_IMPORT = {'compute_agent.exception', 'compute_agent.failpoints',
                   'compute_agent.concurrency'}

_STEP = re.compile(r'``(compute_agent/[\w/]+\.py): ([\w.]+)``')
_ROW = re.compile(r'^   \* - ``(compute_agent/[\w/]*?(?:\.py|/))``\n'
                  r'     - (\w+)$', re.MULTILINE)


def _doc():
    with open(DOC, encoding='utf-8') as doc:
        return doc.read()


def _module_files():
    """module name -> path relative to ROOT, for every non-empty .py."""
    modules = {}
    for directory, _dirs, files in os.walk(os.path.join(ROOT, PACKAGE)):
        for name in files:
            path = os.path.join(directory, name)
            if not name.endswith('.py') or not os.path.getsize(path):
                continue
            relative = os.path.relpath(path, ROOT)
            module = relative[:-3].replace(os.sep, '.')
            if module.endswith('.__init__'):
                module = module[:-len('.__init__')]
            modules[module] = relative.replace(os.sep, '/')
    return modules


def _all_module_names():
    """Every module and package of compute_agent/, empty ones too."""
    names = set()
    for directory, _dirs, files in os.walk(os.path.join(ROOT, PACKAGE)):
        for name in files:
            if name.endswith('.py'):
                relative = os.path.relpath(os.path.join(directory, name),
                                           ROOT)
                module = relative[:-3].replace(os.sep, '.')
                names.add(module[:-len('.__init__')]
                          if module.endswith('.__init__') else module)
    return names


def _parse(relative):
    with open(os.path.join(ROOT, relative), encoding='utf-8') as source:
        return ast.parse(source.read())


def _imports(module, relative, known):
    """(imported module of compute_agent, or a third-party top-level
    name) for every import in the file."""
    package = module if relative.endswith('__init__.py') else \
        module.rpartition('.')[0]
    found = set()
    for node in ast.walk(_parse(relative)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')[:len(package.split('.')) -
                                          node.level + 1]
                origin = '.'.join(base + ([node.module] if node.module
                                          else []))
            else:
                origin = node.module
            names = [f'{origin}.{alias.name}' for alias in node.names]
        else:
            continue
        for name in names:
            if not name.startswith(PACKAGE + '.') and name != PACKAGE:
                found.add(name.split('.')[0])
                continue
            # 'from compute_agent.vm_states import ACTIVE' imports the
            # module compute_agent.vm_states.
            while name not in known:
                name = name.rpartition('.')[0]
            found.add(name)
    return found


def import_graph():
    """module -> the modules (and third-party top-level names) it
    imports."""
    files = _module_files()
    known = _all_module_names()
    return {module: _imports(module, relative, known)
            for module, relative in files.items()}


def layers():
    """module -> its layer, from the document's module table (a row for
    a directory covers the files under it that have no row of their
    own)."""
    rows = dict(_ROW.findall(_doc()))
    assigned = {}
    for module, relative in _module_files().items():
        matches = [path for path in rows if relative == path or
                   (path.endswith('/') and relative.startswith(path))]
        if matches:
            assigned[module] = rows[max(matches, key=len)]
    return assigned


def _resolve(tree, qualified_name):
    """Whether the dotted name is a class or function of the module
    (through classes and functions)."""
    scope = tree.body
    for part in qualified_name.split('.'):
        found = [node for node in scope
                 if isinstance(node, (ast.ClassDef, ast.FunctionDef))
                 and node.name == part]
        if not found:
            return False
        scope = found[0].body
    return True


class DocumentedStepsTest(testtools.TestCase):
    def test_the_document_names_steps(self):
        # Guards the test below against a pattern that finds nothing.
        steps = _STEP.findall(_doc())
        self.assertGreater(len(steps), 40)
        for title in ('The SIGTERM path',
                      'The clean-then-forced power-off path'):
            self.assertIn(title, _doc())

    def test_every_named_function_exists(self):
        missing = []
        for path, name in sorted(set(_STEP.findall(_doc()))):
            if not os.path.isfile(os.path.join(ROOT, path)):
                missing.append(f'{path} (no such file)')
            elif not _resolve(_parse(path), name):
                missing.append(f'{path}: {name}')
        self.assertEqual([], missing, 'doc/source/architecture.rst names '
                         'functions the code does not have')


class ModuleTableTest(testtools.TestCase):
    def test_every_module_has_a_layer(self):
        assigned = layers()
        self.assertEqual(
            [], sorted(set(_module_files()) - set(assigned)),
            'modules without a row in the module table of '
            'doc/source/architecture.rst: say what each is for and its '
            'layer')
        unknown = {module: layer for module, layer in assigned.items()
                   if layer not in RANKS and layer != SHARED}
        self.assertEqual({}, unknown, 'layers the test does not know')

    def test_every_row_names_a_file_or_directory(self):
        missing = [path for path, _layer in _ROW.findall(_doc())
                   if not os.path.exists(os.path.join(ROOT, path))]
        self.assertEqual([], missing)


class ImportRulesTest(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.graph = import_graph()

    def edges(self):
        for module, imported in sorted(self.graph.items()):
            for target in sorted(imported):
                yield module, target

    def agent_edges(self):
        return [(module, target) for module, target in self.edges()
                if target.startswith(PACKAGE)]

    def test_the_graph_is_read(self):
        self.assertIn('compute_agent.virt.libvirt.driver',
                      self.graph[COMPOSITION_ROOT])
        self.assertIn('compute_agent.vm_states',
                      self.graph['compute_agent.lifecycle'])

    def test_only_virt_libvirt_imports_libvirt(self):
        wrong = [module for module, target in self.edges()
                 if target == 'libvirt' and
                 not module.startswith('compute_agent.virt.libvirt.')]
        self.assertEqual([], wrong)

    def test_only_the_composition_root_imports_virt_libvirt(self):
        wrong = [(module, target) for module, target in self.agent_edges()
                 if target.startswith('compute_agent.virt.libvirt')
                 and not module.startswith('compute_agent.virt.libvirt')
                 and module != COMPOSITION_ROOT]
        self.assertEqual([], wrong)

    def test_virt_imports_only_virt_and_exceptions(self):
        wrong = [(module, target) for module, target in self.agent_edges()
                 if module.startswith('compute_agent.virt.')
                 and not target.startswith('compute_agent.virt')
                 and target not in VIRT_MAY_IMPORT]
        self.assertEqual([], wrong, 'virt/ must not import endpoints, '
                         'flows, registries, the service or cmd')

    def test_endpoints_import_neither_service_nor_cmd(self):
        above = ('compute_agent.service', 'compute_agent.signals',
                 'compute_agent.manager', 'compute_agent.cmd')
        wrong = [(module, target) for module, target in self.agent_edges()
                 if module.startswith('compute_agent.endpoints')
                 and target.startswith(above)]
        self.assertEqual([], wrong)

    def test_only_cmd_imports_cmd(self):
        wrong = [(module, target) for module, target in self.agent_edges()
                 if target.startswith('compute_agent.cmd')
                 and not module.startswith('compute_agent.cmd')]
        self.assertEqual([], wrong)

    def test_no_import_runs_upward(self):
        layer = layers()
        upward = []
        for module, target in self.agent_edges():
            if module not in layer or target not in layer:
                continue   # test_every_module_has_a_layer says so
            mine, theirs = layer[module], layer[target]
            if mine == SHARED:
                allowed = theirs == SHARED
            elif theirs == SHARED:
                allowed = mine not in ('virt', 'libvirt') or \
                    target in VIRT_MAY_IMPORT
            else:
                allowed = RANKS[theirs] >= RANKS[mine]
            if not allowed:
                upward.append(f'{module} ({mine}) -> {target} ({theirs})')
        self.assertEqual([], upward)

    def test_telemetry_is_a_leaf(self):
        # Every layer reports through it, virt/ excepted: it must pull
        # nothing of the agent, nor a library, into the code it observes.
        imported = self.graph['compute_agent.telemetry']
        self.assertIn('logging', imported)
        self.assertEqual(set(), imported - sys.stdlib_module_names)
