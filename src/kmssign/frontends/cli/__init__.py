"""The ``kmssign`` command: the parser and exit codes (``main``), each command
(``commands``, ``pyinstaller_command``) and what it prints (``output``)."""
