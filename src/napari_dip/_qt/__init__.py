"""The napari front door: the "Deep Image Prior" dock widget.

Split as a napari plugin is usually split: a Qt-free part (:mod:`.status`, the run's evented
status, progress text and step schedule; :mod:`.worker`, the generator that runs a restoration
off the GUI thread and yields its progress) that plain ``pytest`` tests without a display, and
small Qt widgets (:mod:`.device_combo`, :mod:`.settings_form`, :mod:`.layer_choices`,
:mod:`.progress_view`, :mod:`.loss_plot`) that :mod:`.main_widget` composes. Nothing here is
imported by the engine, and importing this package imports neither Qt nor torch.
"""
