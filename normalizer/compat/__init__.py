"""Drop-in replacements for the watcher libraries people use today, backed by fsnorm's source and matcher.

* :mod:`normalizer.compat.watchdog`: ``Observer`` with watchdog's API and event classes (needs the optional
  extra ``fsnorm[watchdog]``, since the events *are* watchdog's classes);
* :mod:`normalizer.compat.pyinotify`: ``WatchManager``, ``Notifier``, ``ThreadedNotifier``, ``ProcessEvent``
  with pyinotify's API (no dependency on pyinotify).

Neither module is imported by ``import normalizer``.
"""
