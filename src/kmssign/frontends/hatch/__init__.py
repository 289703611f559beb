"""The Hatch build hook: hatchling's side (``hook``, the only module importing hatchling;
the ``hatch`` entry point) and the work behind it (``work``), which never imports it."""
