/* parse_fanotify(data: bytes) -> list[FanotifyEvent] | None
 *
 * The C twin of normalizer.backends.fanotify._parse_fast (the reference; tests/test_fanotify_cparse.py holds the
 * two to identical results with hypothesis, on valid, cut, spliced and random buffers): a fanotify read() buffer
 * as the stream tuples (mask, pid, dir, name, dir2, name2, obj, extra) of normalizer.core.raw.FanotifyEvent,
 * info records placed by type, each handle one slice of the buffer (a fid). It returns None exactly where the
 * reference raises (an odd header, a length past the end, a name without its NUL, a record type twice): the
 * caller (parse_batch) then runs the checked parser, which raises with the offset or parses what the fast
 * path does not take. Little-endian hosts only, as the reference (the caller checks).
 *
 * Why: parsing in Python was about a fifth of `fsnorm watch --backend fanotify`'s CPU under the storm
 * (benchmarks/README.md, "Where the CPU goes"): a struct call per header and a slice per record.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

/* Field offsets of struct fanotify_event_metadata (24 bytes) and of an info record's header. */
#define META_LEN 24
#define INFO_HDR 16 /* what the reference unpacks at each info record: type, pad, len, fsid, handle_bytes */

static PyObject *slice(const unsigned char *data, uint64_t start, uint64_t stop) {
    return PyBytes_FromStringAndSize((const char *)data + start, (Py_ssize_t)(stop - start));
}

/* The name of a DFID_NAME-type record: data[hend : first NUL in [hend, rend)], or NULL with *odd set if there is
 * none (the reference's bytes.index raises ValueError). */
static PyObject *name_of(const unsigned char *data, uint64_t hend, uint64_t rend, int *odd) {
    if (hend >= rend) {
        *odd = 1;
        return NULL;
    }
    const unsigned char *nul = memchr(data + hend, 0, (size_t)(rend - hend));
    if (nul == NULL) {
        *odd = 1;
        return NULL;
    }
    return slice(data, hend, (uint64_t)(nul - data));
}

/* One event's info records in [pos, end) into the slots; 0 done, 1 odd (the reference raises), -1 error. */
static int parse_infos(const unsigned char *data, uint64_t n, uint64_t pos, uint64_t end, PyObject **slots) {
    /* slots: 0 dir, 1 name, 2 dir2, 3 name2, 4 obj, 5 extra (a list, or NULL while empty) */
    while (pos < end) {
        if (pos + INFO_HDR > n)
            return 1; /* struct.error in the reference */
        uint8_t itype = data[pos];
        uint16_t ilen;
        uint32_t hb;
        memcpy(&ilen, data + pos + 2, 2);
        memcpy(&hb, data + pos + 12, 4);
        if (ilen < 4)
            return 1;
        uint64_t rend = pos + ilen, hend = pos + 20 + (uint64_t)hb;
        if (rend > end)
            return 1; /* the reference ends this event's loop past its end and raises */
        int odd = 0;
        if (itype == 1) { /* FID */
            if (hend > rend || slots[4] != NULL)
                return 1;
            if ((slots[4] = slice(data, pos + 4, hend)) == NULL)
                return -1;
        } else if (itype == 10 || itype == 2 || itype == 12) { /* OLD_DFID_NAME, DFID_NAME, NEW_DFID_NAME */
            int d = itype == 12 ? 2 : 0;
            if (slots[d] != NULL)
                return 1;
            PyObject *name = name_of(data, hend, rend, &odd);
            if (name == NULL)
                return odd ? 1 : -1;
            slots[d + 1] = name;
            if ((slots[d] = slice(data, pos + 4, hend)) == NULL)
                return -1;
        } else if (itype == 3) { /* DFID */
            if (hend > rend || slots[0] != NULL)
                return 1;
            if ((slots[0] = slice(data, pos + 4, hend)) == NULL)
                return -1;
        } else { /* any other record, raw */
            if (slots[5] == NULL && (slots[5] = PyList_New(0)) == NULL)
                return -1;
            PyObject *body = slice(data, pos + 4, rend);
            PyObject *pair = body == NULL ? NULL : Py_BuildValue("(iN)", (int)itype, body);
            if (pair == NULL || PyList_Append(slots[5], pair) < 0) {
                Py_XDECREF(pair);
                return -1;
            }
            Py_DECREF(pair);
        }
        pos = rend;
    }
    return 0;
}

/* The stream tuple of one event from its slots (stolen; the empty ones filled in). */
static PyObject *event_tuple(uint64_t mask, int32_t pid, PyObject **slots, PyObject *empty) {
    PyObject *extra = slots[5] == NULL ? PyTuple_New(0) : PyList_AsTuple(slots[5]);
    Py_CLEAR(slots[5]);
    PyObject *m = PyLong_FromUnsignedLongLong(mask), *p = PyLong_FromLong(pid);
    PyObject *item = PyTuple_New(8);
    if (extra == NULL || m == NULL || p == NULL || item == NULL) {
        Py_XDECREF(extra);
        Py_XDECREF(m);
        Py_XDECREF(p);
        Py_XDECREF(item);
        return NULL;
    }
    PyObject *order[6] = {slots[0], slots[1], slots[2], slots[3], slots[4], extra};
    PyTuple_SET_ITEM(item, 0, m);
    PyTuple_SET_ITEM(item, 1, p);
    for (int i = 0; i < 6; i++) {
        PyObject *v = order[i];
        if (v == NULL) {
            v = (i == 1 || i == 3) ? empty : Py_None; /* names default to b"", handles to None */
            Py_INCREF(v);
        }
        PyTuple_SET_ITEM(item, 2 + i, v);
    }
    for (int i = 0; i < 5; i++)
        slots[i] = NULL;
    return item;
}

static PyObject *parse_fanotify(PyObject *module, PyObject *arg) {
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "parse_fanotify takes bytes");
        return NULL;
    }
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(arg);
    uint64_t n = (uint64_t)PyBytes_GET_SIZE(arg), off = 0;
    PyObject *empty = PyBytes_FromStringAndSize(NULL, 0);
    PyObject *out = empty == NULL ? NULL : PyList_New(0);
    if (out == NULL) {
        Py_XDECREF(empty);
        return NULL;
    }
    PyObject *slots[6] = {NULL};
    int rc = 0;
    while (off < n) {
        if (off + META_LEN > n) {
            rc = 1;
            break;
        }
        uint32_t event_len;
        uint16_t meta_len;
        uint64_t mask;
        int32_t pid;
        memcpy(&event_len, data + off, 4);
        memcpy(&meta_len, data + off + 6, 2);
        memcpy(&mask, data + off + 8, 8);
        memcpy(&pid, data + off + 20, 4);
        uint64_t end = off + event_len;
        if (data[off + 4] != 3 || event_len < META_LEN || end > n || meta_len < META_LEN || meta_len > event_len) {
            rc = 1;
            break;
        }
        rc = parse_infos(data, n, off + meta_len, end, slots);
        if (rc != 0)
            break;
        PyObject *item = event_tuple(mask, pid, slots, empty);
        if (item == NULL || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            rc = -1;
            break;
        }
        Py_DECREF(item);
        off = end;
    }
    for (int i = 0; i < 6; i++)
        Py_XDECREF(slots[i]);
    Py_DECREF(empty);
    if (rc != 0) {
        Py_DECREF(out);
        if (rc < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    return out;
}

static PyMethodDef methods[] = {
    {"parse_fanotify", parse_fanotify, METH_O,
     "parse_fanotify(data): the events of a fanotify read() buffer as stream tuples (info records placed by type), "
     "or None where the Python fast parser raises (the caller then runs the checked parser)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fanparse", "The fanotify read buffer parser in C (normalizer.backends.fanotify).", -1,
    methods,
};

PyMODINIT_FUNC PyInit__fanparse(void) { return PyModule_Create(&module); }
