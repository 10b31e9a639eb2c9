/* The common capture batch line decoded in one pass: the C twin of json.loads + CaptureReader._batch
 * (normalizer/capture/log.py) for the one shape CaptureWriter writes for an inotify read,
 *
 *     ["B",T,D,[[wd,mask,cookie,"name"],...]]\n   or   ["B",T,D,[...],backlog,nbytes]\n
 *
 * compact (no whitespace), every number a plain JSON integer within the bounds _batch checks (wd -1..2^31-1,
 * mask, cookie, backlog, nbytes 0..2^32-1, T at most 18 digits, D 0 or 1), no mask bit outside the delivered
 * ones, every name a JSON string without escapes, control characters, '/', that is not "." or "..", and whose
 * bytes are strict UTF-8 (no surrogates, no overlong forms).
 *
 * Anything else -- whitespace, an escape, a bad or odd number, an unknown bit, a damaged line -- returns None
 * and the reader takes the reference path (json.loads + _batch) for the whole line, so every issue, message and
 * item of an unusual line comes from Python, and for a line accepted here the result is what the reference
 * gives: json.loads decodes the line as UTF-8 (surrogatepass) and _batch re-encodes each name with
 * surrogateescape, which for strict UTF-8 gives back the very bytes of the line. tests/test_compiled.py and
 * tests/test_capline.py hold the two paths to identical items and issues (hypothesis).
 *
 * Why: json.loads of a batch line builds a list and a str per event and _batch checks and converts them again;
 * that was about 4,800 instructions per event, the largest cost of `fsnorm replay` (benchmarks/README.md,
 * "Compiled hot path"). Here an event is one tuple, one bytes and (for a cookie) one int.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>

#include "../_cevent.h"

typedef struct {
    const unsigned char *p, *end;
} Cur;

static int lit(Cur *c, const char *s, size_t n) {
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, s, n) != 0)
        return 0;
    c->p += n;
    return 1;
}

#define LIT(c, s) lit((c), (s), sizeof(s) - 1)

/* A JSON integer without sign: "0" or [1-9][0-9]{0,17}. 1 and *out set, or 0 (not this shape). */
static int uint_(Cur *c, uint64_t *out) {
    const unsigned char *p = c->p;
    if (p >= c->end || *p < '0' || *p > '9')
        return 0;
    if (*p == '0') {
        if (p + 1 < c->end && p[1] >= '0' && p[1] <= '9')
            return 0; /* a leading zero: not JSON */
        c->p = p + 1;
        *out = 0;
        return 1;
    }
    uint64_t v = 0;
    int n = 0;
    while (p < c->end && *p >= '0' && *p <= '9') {
        if (++n > 18)
            return 0;
        v = v * 10 + (uint64_t)(*p - '0');
        p++;
    }
    if (p < c->end && (*p == '.' || *p == 'e' || *p == 'E'))
        return 0; /* a float */
    c->p = p;
    *out = v;
    return 1;
}

/* The number of bytes of a strict UTF-8 sequence starting at s (lead byte >= 0x80), or 0 if invalid. */
static int utf8_seq(const unsigned char *s, const unsigned char *end) {
    unsigned char c = s[0];
    Py_ssize_t left = end - s;
    if (c >= 0xC2 && c <= 0xDF)
        return left >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (left < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80)
            return 0;
        if (c == 0xE0 && s[1] < 0xA0)
            return 0; /* overlong */
        if (c == 0xED && s[1] >= 0xA0)
            return 0; /* a surrogate: the reference's surrogateescape would not give these bytes back */
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (left < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && s[1] < 0x90)
            return 0; /* overlong */
        if (c == 0xF4 && s[1] >= 0x90)
            return 0; /* above U+10FFFF */
        return 4;
    }
    return 0;
}

/* A name string; a new bytes object, or NULL with no error set (not this shape), or NULL with an error. */
static PyObject *name_(Cur *c) {
    if (c->p >= c->end || *c->p != '"')
        return NULL;
    const unsigned char *s = ++c->p, *p = s;
    while (p < c->end) {
        unsigned char b = *p;
        if (b == '"')
            break;
        if (b < 0x20 || b == '\\' || b == '/')
            return NULL;
        if (b >= 0x80) {
            int n = utf8_seq(p, c->end);
            if (n == 0)
                return NULL;
            p += n;
        } else {
            p++;
        }
    }
    if (p >= c->end)
        return NULL;
    Py_ssize_t n = p - s;
    if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
        return NULL;
    c->p = p + 1;
    return PyBytes_FromStringAndSize((const char *)s, n);
}

/* parse_batch(line, known_bits): (t, drained, events, backlog, nbytes) for a common batch line, else None. */
static PyObject *parse_batch(PyObject *module, PyObject *args) {
    const char *data;
    Py_ssize_t size;
    unsigned long long known;
    if (!PyArg_ParseTuple(args, "y#K:parse_batch", &data, &size, &known))
        return NULL;
    Cur c = {(const unsigned char *)data, (const unsigned char *)data + size};
    uint64_t t, drained, wd, mask, cookie, backlog = 0, nbytes = 0;
    int has_backlog = 0;
    if (!LIT(&c, "[\"B\",") || !uint_(&c, &t) || !LIT(&c, ",") || !uint_(&c, &drained) || drained > 1 ||
        !LIT(&c, ",["))
        Py_RETURN_NONE;
    PyObject *events = PyList_New(0);
    if (events == NULL)
        return NULL;
    if (!LIT(&c, "]")) {
        for (;;) {
            int neg = 0;
            if (!LIT(&c, "["))
                goto not_common;
            if (LIT(&c, "-1")) {
                neg = 1;
                wd = 1;
                if (c.p < c.end && *c.p >= '0' && *c.p <= '9')
                    goto not_common;
            } else if (!uint_(&c, &wd) || wd > INT32_MAX) {
                goto not_common;
            }
            if (!LIT(&c, ",") || !uint_(&c, &mask) || mask > UINT32_MAX || (mask & ~(uint64_t)known) ||
                !LIT(&c, ",") || !uint_(&c, &cookie) || cookie > UINT32_MAX || !LIT(&c, ","))
                goto not_common;
            PyObject *name = name_(&c);
            if (name == NULL) {
                if (PyErr_Occurred())
                    goto error;
                goto not_common;
            }
            PyObject *ev = inotify_event_tuple(neg ? -1L : (long)wd, (unsigned long)mask, (unsigned long)cookie,
                                               name);
            if (ev == NULL)
                goto error;
            int rc = PyList_Append(events, ev);
            Py_DECREF(ev);
            if (rc < 0)
                goto error;
            if (!LIT(&c, "]"))
                goto not_common;
            if (LIT(&c, ","))
                continue;
            if (LIT(&c, "]"))
                break;
            goto not_common;
        }
    }
    if (LIT(&c, ",")) {
        if (!uint_(&c, &backlog) || backlog > UINT32_MAX || !LIT(&c, ",") || !uint_(&c, &nbytes) ||
            nbytes > UINT32_MAX)
            goto not_common;
        has_backlog = 1;
    }
    if (!LIT(&c, "]\n") || c.p != c.end)
        goto not_common;
    PyObject *out;
    if (has_backlog)
        out = Py_BuildValue("(KOOKK)", (unsigned long long)t, drained ? Py_True : Py_False, events,
                            (unsigned long long)backlog, (unsigned long long)nbytes);
    else
        out = Py_BuildValue("(KOOOi)", (unsigned long long)t, drained ? Py_True : Py_False, events, Py_None, 0);
    Py_DECREF(events);
    return out;
not_common:
    Py_DECREF(events);
    Py_RETURN_NONE;
error:
    Py_DECREF(events);
    return NULL;
}

static PyMethodDef methods[] = {
    {"parse_batch", parse_batch, METH_VARARGS,
     "parse_batch(line, known_bits): (t, drained, events, backlog, nbytes) of a common capture batch line, or "
     "None (use json.loads and CaptureReader._batch, the reference)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_capline", "The common capture batch line in one pass (normalizer.capture.log).", -1,
    methods,
};

PyMODINIT_FUNC PyInit__capline(void) { return PyModule_Create(&module); }
