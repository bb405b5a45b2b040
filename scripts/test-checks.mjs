// Static checks `npm test` runs on the suite before any test file (scripts/test.mjs):
//
// - `.only`: a `test.only(` / `s.only(` anywhere under test/ fails the run (uvu would silently
//   run that one test and report the file as passing).
// - no assertion: every test registered with uvu (`test('name', fn)`, a `suite()` and its
//   `.only`/`.skip`, a suite handed around as `Test`) must assert in its body: call a member of
//   uvu/assert (`assert.is(...)`, or a name imported from 'uvu/assert'), `rejects(...)`
//   (test/helpers/rejects.ts), or a function that itself asserts. Such a function is found, not
//   listed: a function declared in the same file or imported from another file under test/ whose
//   body asserts (transitively), e.g. a `check(...)` helper or a shared suite's `expectX`. Calls
//   through an object (`h.expectRenewal()`) are followed when the method's name is one that
//   asserts in a class or object literal of the same file or of an imported test/ file.
//   A test that really cannot assert in its body says why on the line before it:
//     // no-assertion-check: <the reason, e.g. "the assertion is the spawned program's exit code">
//   and that comment is the whole allow-list (grep for it).
import { readFileSync } from 'node:fs';
import { dirname, relative, resolve } from 'node:path';
import ts from 'typescript';

const ALLOW = /\/\/\s*no-assertion-check:\s*\S/;

/** Parsed modules under test/, by absolute path. */
const modules = new Map();

function load(file) {
  let m = modules.get(file);
  if (m !== undefined) return m;
  const text = readFileSync(file, 'utf8');
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  m = {
    file,
    sf,
    text,
    imports: new Map(),
    assertNames: new Set(),
    functions: new Map(),
    methods: new Map(),
  };
  modules.set(file, m);
  for (const st of sf.statements) {
    if (!ts.isImportDeclaration(st) || !ts.isStringLiteral(st.moduleSpecifier)) continue;
    const from = st.moduleSpecifier.text;
    const clause = st.importClause;
    if (clause === undefined) continue;
    const named = clause.namedBindings;
    if (from === 'uvu/assert') {
      if (named && ts.isNamespaceImport(named)) m.assertNames.add(`${named.name.text}.*`);
      if (named && ts.isNamedImports(named)) for (const e of named.elements) m.assertNames.add(e.name.text);
      continue;
    }
    if (!from.startsWith('.')) continue;
    const target = resolve(dirname(file), from);
    if (named && ts.isNamedImports(named))
      for (const e of named.elements)
        m.imports.set(e.name.text, { target, name: (e.propertyName ?? e.name).text });
    if (named && ts.isNamespaceImport(named)) m.imports.set(`${named.name.text}.*`, { target, name: '*' });
  }
  // Top-level and nested named functions, and methods of classes / object literals.
  const visit = (n) => {
    if (ts.isFunctionDeclaration(n) && n.name && n.body) m.functions.set(n.name.text, n.body);
    if (
      ts.isVariableDeclaration(n) &&
      ts.isIdentifier(n.name) &&
      n.initializer &&
      (ts.isArrowFunction(n.initializer) || ts.isFunctionExpression(n.initializer))
    )
      m.functions.set(n.name.text, n.initializer.body);
    if (
      (ts.isMethodDeclaration(n) || ts.isGetAccessorDeclaration(n)) &&
      n.body &&
      n.name &&
      ts.isIdentifier(n.name)
    )
      m.methods.set(n.name.text, [...(m.methods.get(n.name.text) ?? []), n.body]);
    if (
      ts.isPropertyAssignment(n) &&
      ts.isIdentifier(n.name) &&
      (ts.isArrowFunction(n.initializer) || ts.isFunctionExpression(n.initializer))
    )
      m.methods.set(n.name.text, [...(m.methods.get(n.name.text) ?? []), n.initializer.body]);
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return m;
}

function tryLoad(target) {
  for (const f of [target, `${target}.ts`])
    try {
      return load(f);
    } catch {}
  return undefined;
}

const asserting = new Map(); // key `${file}#${name}` -> boolean (false while being computed)

function functionAsserts(m, name) {
  const key = `${m.file}#${name}`;
  if (asserting.has(key)) return asserting.get(key);
  asserting.set(key, false);
  let yes = false;
  const body = m.functions.get(name);
  if (body !== undefined) yes = nodeAsserts(m, body);
  else {
    const imp = m.imports.get(name);
    const t = imp && tryLoad(imp.target);
    if (t !== undefined) yes = functionAsserts(t, imp.name);
  }
  asserting.set(key, yes);
  return yes;
}

function methodAsserts(m, name, seen = new Set()) {
  const key = `${m.file}#.${name}`;
  if (asserting.has(key)) return asserting.get(key);
  asserting.set(key, false);
  let yes = (m.methods.get(name) ?? []).some((b) => nodeAsserts(m, b));
  if (!yes)
    for (const imp of m.imports.values()) {
      if (seen.has(imp.target)) continue;
      seen.add(imp.target);
      const t = tryLoad(imp.target);
      if (t !== undefined && methodAsserts(t, name, seen)) {
        yes = true;
        break;
      }
    }
  asserting.set(key, yes);
  return yes;
}

/** Does this node (a test body or a helper's body) assert, directly or through a helper? */
function nodeAsserts(m, node) {
  let found = false;
  const visit = (n) => {
    if (found) return;
    if (ts.isCallExpression(n)) {
      const c = n.expression;
      if (ts.isIdentifier(c)) {
        if (m.assertNames.has(c.text) || c.text === 'rejects' || functionAsserts(m, c.text)) found = true;
      } else if (ts.isPropertyAccessExpression(c)) {
        const obj = c.expression;
        let root = obj;
        while (ts.isPropertyAccessExpression(root)) root = root.expression; // assert.not.ok(
        if (ts.isIdentifier(root) && m.assertNames.has(`${root.text}.*`)) found = true;
        else if (ts.isIdentifier(obj) && m.imports.has(`${obj.text}.*`)) {
          const t = tryLoad(m.imports.get(`${obj.text}.*`).target);
          if (t !== undefined && functionAsserts(t, c.name.text)) found = true;
        } else if (methodAsserts(m, c.name.text)) found = true;
      }
    }
    if (!found) ts.forEachChild(n, visit);
  };
  visit(node);
  return found;
}

const isName = (a) =>
  ts.isStringLiteral(a) || ts.isNoSubstitutionTemplateLiteral(a) || ts.isTemplateExpression(a);
const isFn = (a) => a !== undefined && (ts.isArrowFunction(a) || ts.isFunctionExpression(a));

/** Identifiers in this file that are uvu tests/suites. */
function testCallees(m) {
  const names = new Set();
  for (const st of m.sf.statements)
    if (
      ts.isImportDeclaration(st) &&
      ts.isStringLiteral(st.moduleSpecifier) &&
      st.moduleSpecifier.text === 'uvu'
    ) {
      const named = st.importClause?.namedBindings;
      if (named && ts.isNamedImports(named))
        for (const e of named.elements)
          if ((e.propertyName ?? e.name).text === 'test') names.add(e.name.text);
    }
  const visit = (n) => {
    const typed = (t) => t !== undefined && /^(uvu\.)?Test\b/.test(t.getText(m.sf));
    if (ts.isVariableDeclaration(n) && ts.isIdentifier(n.name)) {
      const init = n.initializer;
      const call = init && ts.isCallExpression(init) ? init.expression.getText(m.sf) : '';
      if (typed(n.type) || /^(suite|\w+Suite)$/.test(call)) names.add(n.name.text);
    }
    if (ts.isParameter(n) && ts.isIdentifier(n.name) && typed(n.type)) names.add(n.name.text);
    ts.forEachChild(n, visit);
  };
  visit(m.sf);
  return names;
}

/**
 * Checks the given .ts files (test files and the suites they share).
 * Returns `{ only: string[], unasserted: string[] }`, each entry `path:line name`.
 */
export function checkSuite(files, root) {
  const only = [];
  const unasserted = [];
  for (const file of files) {
    const m = load(file);
    const callees = testCallees(m);
    const rel = relative(root, file);
    const line = (n) => m.sf.getLineAndCharacterOfPosition(n.getStart(m.sf)).line + 1;
    const visit = (n) => {
      if (ts.isCallExpression(n)) {
        const c = n.expression;
        let base;
        let mod = '';
        if (ts.isIdentifier(c)) base = c.text;
        else if (ts.isPropertyAccessExpression(c) && ts.isIdentifier(c.expression)) {
          base = c.expression.text;
          mod = c.name.text;
        }
        const [name, fn] = n.arguments;
        // Any `x.only('name', () => ...)`, whatever x is called.
        if (mod === 'only' && name !== undefined && isName(name) && isFn(fn))
          only.push(`${rel}:${line(n)} ${base}.only(${name.getText(m.sf)}`);
        if (base !== undefined && callees.has(base) && (mod === '' || mod === 'only' || mod === 'skip')) {
          // The body: an inline function, a named one (`test('x', check)`), or what makes one.
          const asserts = (f) =>
            isFn(f)
              ? nodeAsserts(m, f.body)
              : ts.isIdentifier(f)
                ? functionAsserts(m, f.text)
                : nodeAsserts(m, f);
          if (mod !== 'skip' && name !== undefined && isName(name) && fn !== undefined && !asserts(fn)) {
            const before = m.text.slice(0, n.getStart(m.sf)).split('\n').slice(-2, -1)[0] ?? '';
            if (!ALLOW.test(before)) unasserted.push(`${rel}:${line(n)} ${name.getText(m.sf)}`);
          }
        }
      }
      ts.forEachChild(n, visit);
    };
    visit(m.sf);
  }
  return { only, unasserted };
}
