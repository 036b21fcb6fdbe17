# kbox startup 20: in a Jupyter kernel, show matplotlib figures inline as PNG.


def _kbox_inline():
    ip = get_ipython()  # noqa: F821 (provided by IPython)
    if ip is None or getattr(ip, "kernel", None) is None:
        return  # terminal IPython / plain scripts keep matplotlib's own backend choice
    ip.run_line_magic("matplotlib", "inline")
    from matplotlib_inline.backend_inline import set_matplotlib_formats
    set_matplotlib_formats("png")


_kbox_inline()
del _kbox_inline
