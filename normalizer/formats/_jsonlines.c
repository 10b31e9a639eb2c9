/* The JSON Lines of a read's records in one call: the C twin of
 * "".join(rec_to_json(r) + end for r in records).encode("utf-8", "surrogateescape")
 * (normalizer.cli.formatting.Output.encode with the json format; normalizer.formats.jsonl.rec_to_json is the
 * reference, and tests/test_compiled.py holds the two to identical bytes with hypothesis).
 *
 * Only the common record is written here: flags empty, message None, pid None or an int, object_id None or a
 * str (a fanotify record has both: add_ids), both paths valid
 * UTF-8, kind and source str, cookie None or an int, t_ns and mask ints that fit in 64 bits. Any other record
 * (a flagged one-sided rename, an overflow, a note, an undecodable name) is handed to the reference function
 * given by the caller and its line encoded as Output.encode does: so the rules live in one place, in Python.
 *
 * Why: building each line from Python strings (decode, escape, concatenations, int -> str, then one encode of
 * the whole text) was about 1.1 us a record, the largest per-event cost left in `fsnorm watch`
 * (benchmarks/README.md, "Where the CPU goes"); here it is one pass over the bytes into one buffer.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>
#include <structmember.h>

/* The output buffer is the bytes object returned: sized from an estimate, grown in place (_PyBytes_Resize) in
 * the rare case the estimate was short, cut to its length at the end. A malloc'ed buffer, doubled from 4 KiB,
 * then copied into a new bytes object, moved each byte about three times: 14% of replay's time
 * (benchmarks/README.md, "Replay and matcher measures"). */
typedef struct {
    char *data;
    size_t len, cap;
    PyObject *obj; /* the bytes object holding data (refcount 1: ours alone until returned) */
} Buf;

/* Growing the buffer, the rare case, out of line; the check and the copy are inlined at every call. The
 * capacity is never 0: encode_lines starts it at its estimate. */
static __attribute__((noinline)) int buf_grow(Buf *b, size_t more) {
    size_t cap = b->cap;
    while (cap < b->len + more)
        cap *= 2;
    if (_PyBytes_Resize(&b->obj, (Py_ssize_t)cap) < 0) /* on failure it released obj and set it NULL */
        return -1;
    b->data = PyBytes_AS_STRING(b->obj);
    b->cap = cap;
    return 0;
}

static inline __attribute__((always_inline)) int buf_reserve(Buf *b, size_t more) {
    if (b->len + more <= b->cap)
        return 0;
    return buf_grow(b, more);
}

static inline __attribute__((always_inline)) int buf_add(Buf *b, const char *s, size_t n) {
    if (buf_reserve(b, n) < 0)
        return -1;
    memcpy(b->data + b->len, s, n); /* a literal's constant size: a few moves */
    b->len += n;
    return 0;
}

#define ADD_LIT(b, s) buf_add((b), (s), sizeof(s) - 1)

static const char HEX[] = "0123456789abcdef";

/* Eight bytes at a time over the clean stretch of a path (no byte to escape, no byte >= 0x80): a byte loop
 * over 60-200 byte paths, two or three times per record, was a fifth of the writer's time. SWAR tests
 * (Hacker's Delight; "Bit Twiddling Hacks"): they find a byte < n (n <= 128) or equal to c with no false
 * negative, and report none when there is none: a borrow only starts at a byte that qualifies. */
#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL
static inline uint64_t has_less(uint64_t x, unsigned n) { return (x - ONES * n) & ~x & HIGHS; }
static inline uint64_t has_byte(uint64_t x, unsigned char c) { return has_less(x ^ (ONES * c), 1); }
static inline uint64_t load8(const unsigned char *s) {
    uint64_t w;
    memcpy(&w, s, 8);
    return w;
}

/* A JSON string of UTF-8 text s[0:n], quoted, escaped as json.encoder.encode_basestring does: '"' and '\\',
 * the controls \b \f \n \r \t by name, every other byte below 0x20 as \u00XX; nothing else (a UTF-8 sequence
 * never holds a byte below 0x80, so escaping bytes is escaping characters). */
static int add_quoted(Buf *b, const unsigned char *s, size_t n) {
    if (buf_reserve(b, n * 6 + 2) < 0)
        return -1;
    char *o = b->data + b->len;
    *o++ = '"';
    size_t i = 0;
    for (; i + 8 <= n; i += 8) { /* the clean words as they are; from the first word with a byte to escape on,
                                    byte by byte */
        uint64_t w = load8(s + i);
        if (has_less(w, 0x20) | has_byte(w, '"') | has_byte(w, '\\'))
            break;
        memcpy(o, &w, 8);
        o += 8;
    }
    for (; i < n; i++) {
        unsigned char c = s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *o++ = (char)c;
            continue;
        }
        *o++ = '\\';
        switch (c) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '\b': *o++ = 'b'; break;
        case '\f': *o++ = 'f'; break;
        case '\n': *o++ = 'n'; break;
        case '\r': *o++ = 'r'; break;
        case '\t': *o++ = 't'; break;
        default:
            *o++ = 'u';
            *o++ = '0';
            *o++ = '0';
            *o++ = HEX[c >> 4];
            *o++ = HEX[c & 15];
        }
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    return 0;
}

/* 1 if the bytes are valid UTF-8 as bytes.decode() (strict) takes them, 0 if not, -1 on error. */
static int valid_utf8(PyObject *bytes) {
    const unsigned char *s = (const unsigned char *)PyBytes_AS_STRING(bytes);
    Py_ssize_t n = PyBytes_GET_SIZE(bytes);
    Py_ssize_t i = 0;
    while (i + 8 <= n && !(load8(s + i) & HIGHS)) /* ASCII words */
        i += 8;
    for (; i < n; i++) {
        if (s[i] >= 0x80) {
            PyObject *text = PyUnicode_DecodeUTF8((const char *)s, n, "strict");
            if (text != NULL) {
                Py_DECREF(text);
                return 1;
            }
            if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
                PyErr_Clear();
                return 0;
            }
            return -1;
        }
    }
    return 1;
}

static PyObject *s_kind, *s_path, *s_dst, *s_is_dir, *s_cookie, *s_source, *s_flags, *s_t_ns, *s_mask, *s_pid,
    *s_object_id, *s_message, *s_rename;

/* An int field as decimal; 0 on success, 1 if the value is not an exact int that fits (use the reference). */
static int add_int(Buf *b, PyObject *v) {
    if (!PyLong_CheckExact(v))
        return 1;
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow)
        return 1;
    if (x == -1 && PyErr_Occurred())
        return -1;
    /* digits right to left, two at a time (snprintf costs several times more) */
    static const char PAIRS[] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                                "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                                "8081828384858687888990919293949596979899";
    char tmp[24], *p = tmp + sizeof tmp;
    unsigned long long u = x < 0 ? 0ULL - (unsigned long long)x : (unsigned long long)x;
    while (u >= 100) {
        unsigned d = (unsigned)(u % 100) * 2;
        u /= 100;
        *--p = PAIRS[d + 1];
        *--p = PAIRS[d];
    }
    if (u >= 10) {
        *--p = PAIRS[u * 2 + 1];
        *--p = PAIRS[u * 2];
    } else {
        *--p = (char)('0' + u);
    }
    if (x < 0)
        *--p = '-';
    return buf_add(b, p, (size_t)(tmp + sizeof tmp - p));
}

/* How a record type's fields are read, found once per type (the MRO lookup PyObject_GetAttr repeats for each of
 * the twelve fields of every record was a third of this writer's instructions): a field that is a getset
 * descriptor (a mypyc native class's attribute) is read by calling its getter, one that is a plain object slot
 * (a Python class's __slots__) at its offset -- exactly what PyObject_GenericGetAttr does with a data
 * descriptor, which takes precedence over any instance dict. Anything else (another descriptor, a type with its
 * own __getattribute__, a type whose version tag is not valid) goes through PyObject_GetAttr. The entry is
 * used only while the type's version tag is unchanged (assigning to a class attribute changes it). */
#define NFIELDS 12
#define NTYPES 8
typedef struct {
    getter get;          /* a getset getter, or NULL */
    void *closure;
    Py_ssize_t offset;   /* > 0: an object slot at this offset; else PyObject_GetAttr (when get is NULL) */
} FieldReader;
typedef struct {
    PyTypeObject *type;  /* a strong reference, so that the address is never another type's */
    unsigned int version;
    FieldReader f[NFIELDS];
} TypeReaders;
static TypeReaders readers[NTYPES];
static int n_readers;

static const TypeReaders *readers_for(PyTypeObject *type, PyObject *const *names) {
#ifdef Py_TPFLAGS_VALID_VERSION_TAG
    for (int i = 0; i < n_readers; i++)
        if (readers[i].type == type && readers[i].version == type->tp_version_tag &&
            (type->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG))
            return &readers[i];
    if (type->tp_getattro != PyObject_GenericGetAttr)
        return NULL;
    TypeReaders t = {type, 0, {{0}}};
    for (int i = 0; i < NFIELDS; i++) {
        PyObject *d = _PyType_Lookup(type, names[i]); /* borrowed; sets the version tag */
        if (d != NULL && Py_IS_TYPE(d, &PyGetSetDescr_Type) && ((PyGetSetDescrObject *)d)->d_getset->get != NULL) {
            t.f[i].get = ((PyGetSetDescrObject *)d)->d_getset->get;
            t.f[i].closure = ((PyGetSetDescrObject *)d)->d_getset->closure;
        } else if (d != NULL && Py_IS_TYPE(d, &PyMemberDescr_Type) &&
                   ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX &&
                   (((PyMemberDescrObject *)d)->d_member->flags & ~READONLY) == 0 &&
                   ((PyMemberDescrObject *)d)->d_member->offset > 0) {
            t.f[i].offset = ((PyMemberDescrObject *)d)->d_member->offset;
        }
    }
    if (!(type->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG))
        return NULL;
    t.version = type->tp_version_tag;
    int slot = -1;
    for (int i = 0; i < n_readers; i++)
        if (readers[i].type == type)
            slot = i; /* the same type, changed since: replace its entry */
    if (slot < 0) {
        if (n_readers == NTYPES)
            return NULL; /* a program with more record types than this: the generic path for the rest */
        slot = n_readers++;
        Py_INCREF(type);
    }
    readers[slot] = t;
    return &readers[slot];
#else
    (void)type;
    (void)names;
    return NULL;
#endif
}

/* One field of rec, a new reference (NULL with an exception set, as PyObject_GetAttr). */
static PyObject *read_field(PyObject *rec, const TypeReaders *t, int i, PyObject *name) {
    if (t != NULL) {
        const FieldReader *f = &t->f[i];
        if (f->get != NULL)
            return f->get(rec, f->closure);
        if (f->offset > 0) {
            PyObject *v = *(PyObject **)((char *)rec + f->offset);
            if (v != NULL) {
                Py_INCREF(v);
                return v;
            }
        }
    }
    return PyObject_GetAttr(rec, name); /* also the AttributeError of an unset slot */
}

/* The tail of a record with a pid or an object_id (every fanotify record: its pid and its handle's hex), as
 * rec_to_json's _rare writes it with message None; 0 done, 1 use the reference (a pid that does not fit, an
 * object_id with a lone surrogate), -1 error. */
static int add_ids(Buf *b, PyObject *pid, PyObject *object_id) {
    int r = ADD_LIT(b, ",\"pid\":");
    if (r == 0)
        r = pid == Py_None ? ADD_LIT(b, "null") : add_int(b, pid);
    if (r == 0)
        r = ADD_LIT(b, ",\"object_id\":");
    if (r == 0 && object_id == Py_None)
        r = ADD_LIT(b, "null");
    else if (r == 0) {
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(object_id, &n);
        if (s == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError))
                return -1;
            PyErr_Clear();
            return 1;
        }
        r = add_quoted(b, (const unsigned char *)s, (size_t)n);
    }
    return r == 0 ? ADD_LIT(b, ",\"message\":null}") : r;
}

/* Append the line of one record if it is a common one: 0 done, 1 not common (nothing appended), -1 error. */
static int add_common(Buf *b, PyObject *rec, const char *end, size_t end_n) {
    PyObject *f[NFIELDS] = {NULL};
    PyObject *names[NFIELDS] = {s_kind, s_path, s_dst, s_is_dir, s_cookie, s_source, s_flags, s_t_ns, s_mask,
                                s_pid, s_object_id, s_message};
    int rc = 1;
    size_t mark = b->len;
    const TypeReaders *t = readers_for(Py_TYPE(rec), names);
    for (int i = 0; i < NFIELDS; i++) {
        f[i] = read_field(rec, t, i, names[i]);
        if (f[i] == NULL) {
            rc = -1;
            goto done;
        }
    }
    PyObject *kind = f[0], *path = f[1], *dst = f[2], *is_dir = f[3], *cookie = f[4], *source = f[5];
    PyObject *flags = f[6], *t_ns = f[7], *mask = f[8];
    PyObject *pid = f[9], *object_id = f[10];
    if (f[11] != Py_None || (pid != Py_None && !PyLong_CheckExact(pid)) ||
        (object_id != Py_None && !PyUnicode_CheckExact(object_id)))
        goto done;
    if (!PyTuple_CheckExact(flags) || PyTuple_GET_SIZE(flags) != 0)
        goto done;
    if (!PyUnicode_CheckExact(kind) || !PyUnicode_CheckExact(source) || !PyBytes_CheckExact(path) ||
        !PyBytes_CheckExact(dst))
        goto done;
    int rename = kind == s_rename || PyUnicode_Compare(kind, s_rename) == 0; /* mostly the interned literal */
    if (rename == 0 && PyErr_Occurred()) {
        rc = -1;
        goto done;
    }
    int ok = valid_utf8(path);
    if (ok == 1 && rename)
        ok = valid_utf8(dst);
    if (ok != 1) {
        rc = ok == 0 ? 1 : -1; /* not valid UTF-8: the reference writes the *_b64 form */
        goto done;
    }
    Py_ssize_t kind_n, source_n;
    const char *kind_s = PyUnicode_AsUTF8AndSize(kind, &kind_n);
    const char *source_s = kind_s == NULL ? NULL : PyUnicode_AsUTF8AndSize(source, &source_n);
    if (source_s == NULL) { /* a lone surrogate: the reference says what that becomes */
        if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
            rc = -1;
            goto done;
        }
        PyErr_Clear();
        goto done;
    }
    int truth = is_dir == Py_True ? 1 : is_dir == Py_False ? 0 : PyObject_IsTrue(is_dir);
    if (truth < 0) {
        rc = -1;
        goto done;
    }
    if (rename) {
        if (ADD_LIT(b, "{\"kind\":\"rename\",\"src\":") < 0 ||
            add_quoted(b, (const unsigned char *)PyBytes_AS_STRING(path), (size_t)PyBytes_GET_SIZE(path)) < 0 ||
            ADD_LIT(b, ",\"dst\":") < 0 ||
            add_quoted(b, (const unsigned char *)PyBytes_AS_STRING(dst), (size_t)PyBytes_GET_SIZE(dst)) < 0) {
            rc = -1;
            goto done;
        }
    } else {
        if (ADD_LIT(b, "{\"kind\":") < 0 || add_quoted(b, (const unsigned char *)kind_s, (size_t)kind_n) < 0 ||
            ADD_LIT(b, ",\"path\":") < 0 ||
            add_quoted(b, (const unsigned char *)PyBytes_AS_STRING(path), (size_t)PyBytes_GET_SIZE(path)) < 0) {
            rc = -1;
            goto done;
        }
    }
    if ((truth ? ADD_LIT(b, ",\"is_dir\":true,\"cookie\":") : ADD_LIT(b, ",\"is_dir\":false,\"cookie\":")) < 0) {
        rc = -1;
        goto done;
    }
    int r = cookie == Py_None ? ADD_LIT(b, "null") : add_int(b, cookie);
    if (r == 0)
        r = ADD_LIT(b, ",\"source\":\"");
    if (r == 0)
        r = buf_add(b, source_s, (size_t)source_n);
    if (r == 0)
        r = ADD_LIT(b, "\",\"flags\":[],\"t_ns\":");
    if (r == 0)
        r = add_int(b, t_ns);
    if (r == 0)
        r = ADD_LIT(b, ",\"mask\":");
    if (r == 0)
        r = add_int(b, mask);
    if (r == 0)
        r = pid == Py_None && object_id == Py_None ? ADD_LIT(b, ",\"pid\":null,\"object_id\":null,\"message\":null}")
                                                  : add_ids(b, pid, object_id);
    if (r == 0)
        r = buf_add(b, end, end_n);
    rc = r;
done:
    if (rc != 0)
        b->len = mark; /* nothing of a record left half-written */
    for (int i = 0; i < NFIELDS; i++)
        Py_XDECREF(f[i]);
    return rc;
}

static PyObject *encode_lines(PyObject *module, PyObject *args) {
    PyObject *records, *end, *reference;
    if (!PyArg_ParseTuple(args, "O!UO:encode_lines", &PyList_Type, &records, &end, &reference))
        return NULL;
    Py_ssize_t end_n;
    const char *end_s = PyUnicode_AsUTF8AndSize(end, &end_n);
    if (end_s == NULL)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(records);
    /* about 250 bytes a line with paths of 100 bytes; the estimate only saves regrowing, any size works */
    size_t estimate = (size_t)n * 256 + 256;
    Buf b = {NULL, 0, estimate, PyBytes_FromStringAndSize(NULL, (Py_ssize_t)estimate)};
    if (b.obj == NULL)
        return NULL;
    b.data = PyBytes_AS_STRING(b.obj);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *rec = PyList_GET_ITEM(records, i);
        Py_INCREF(rec);
        int rc = add_common(&b, rec, end_s, (size_t)end_n);
        if (rc == 1) { /* the reference: rec_to_json(rec) + end, encoded as Output.encode does */
            PyObject *line = PyObject_CallOneArg(reference, rec);
            PyObject *full = line == NULL ? NULL : PyUnicode_Concat(line, end);
            PyObject *raw = full == NULL ? NULL : PyUnicode_AsEncodedString(full, "utf-8", "surrogateescape");
            Py_XDECREF(line);
            Py_XDECREF(full);
            rc = raw == NULL ? -1 : buf_add(&b, PyBytes_AS_STRING(raw), (size_t)PyBytes_GET_SIZE(raw));
            Py_XDECREF(raw);
        }
        Py_DECREF(rec);
        if (rc < 0) {
            Py_XDECREF(b.obj); /* NULL if a failed resize released it */
            return NULL;
        }
    }
    if (_PyBytes_Resize(&b.obj, (Py_ssize_t)b.len) < 0)
        return NULL;
    return b.obj;
}

static PyMethodDef methods[] = {
    {"encode_lines", encode_lines, METH_VARARGS,
     "encode_lines(records, end, rec_to_json): the UTF-8 bytes of each record's JSON line followed by end."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_jsonlines", "JSON Lines of a read's records in one call (normalizer.formats.fastjson).",
    -1, methods,
};

PyMODINIT_FUNC PyInit__jsonlines(void) {
#define INTERN(var, text)                                                                                      \
    if ((var = PyUnicode_InternFromString(text)) == NULL)                                                      \
        return NULL;
    INTERN(s_kind, "kind")
    INTERN(s_path, "path")
    INTERN(s_dst, "dst")
    INTERN(s_is_dir, "is_dir")
    INTERN(s_cookie, "cookie")
    INTERN(s_source, "source")
    INTERN(s_flags, "flags")
    INTERN(s_t_ns, "t_ns")
    INTERN(s_mask, "mask")
    INTERN(s_pid, "pid")
    INTERN(s_object_id, "object_id")
    INTERN(s_message, "message")
    INTERN(s_rename, "rename")
#undef INTERN
    return PyModule_Create(&module);
}
