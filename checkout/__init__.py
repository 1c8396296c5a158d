"""The checkout's layout, the bottom layer under trainer, modelctl, devstack
and perf: where things are (`paths`) and copies of the committed model
definition configured for one run (`repository`). Imports no other package
of this project."""
