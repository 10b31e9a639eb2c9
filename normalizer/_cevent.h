/* The (wd, mask, cookie, name) tuple of one inotify event, as the normalizer takes it (core/raw.py
 * InotifyBatch.events), built the same way by the two C extensions that make them: the live reader's parser
 * (backends/_ringreader.c parse_inotify) and the capture line decoder (capture/_capline.c parse_batch).
 *
 * It holds ints and bytes only, so it can be in no reference cycle: it is untracked by the cyclic collector at
 * once (what the collector would conclude itself at its next pass, _PyTuple_MaybeUntrack), so a storm's events
 * never cost a collection pass. */
#ifndef FSNORM_CEVENT_H
#define FSNORM_CEVENT_H

#include <Python.h>

/* A new reference, or NULL with an exception set. Steals ``name`` (a bytes object), on success and on error. */
static inline PyObject *inotify_event_tuple(long wd, unsigned long mask, unsigned long cookie, PyObject *name) {
    PyObject *w = PyLong_FromLong(wd);
    PyObject *m = PyLong_FromUnsignedLong(mask);
    PyObject *c = PyLong_FromUnsignedLong(cookie);
    PyObject *ev = PyTuple_New(4);
    if (w == NULL || m == NULL || c == NULL || ev == NULL) {
        Py_XDECREF(w);
        Py_XDECREF(m);
        Py_XDECREF(c);
        Py_XDECREF(ev);
        Py_DECREF(name);
        return NULL;
    }
    PyTuple_SET_ITEM(ev, 0, w);
    PyTuple_SET_ITEM(ev, 1, m);
    PyTuple_SET_ITEM(ev, 2, c);
    PyTuple_SET_ITEM(ev, 3, name);
    PyObject_GC_UnTrack(ev);
    return ev;
}

#endif
