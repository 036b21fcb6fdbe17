# kbox startup 10: the read_df() helper (table files to pandas DataFrames, encoding auto-detection).


def read_df(path, autodetect_encoding=True, **kwargs):
    """Read a table file by its extension: csv, tsv (text) or xls, xlsx, xlsm, xlsb, odf, ods, odt.

    Text files that fail to decode are retried with the encodings chardet detects, then with
    utf-8-sig and gb18030 (a superset of GBK/GB2312), unless autodetect_encoding is False.
    Extra keyword arguments go to pandas.read_csv / pandas.read_excel.
    """
    import os
    import pandas as pd

    ext = os.path.splitext(os.fspath(path))[1].lower().lstrip(".")
    if ext in ("csv", "tsv"):
        if ext == "tsv":
            kwargs.setdefault("sep", "\t")
        return _kbox_read_text(pd.read_csv, path, autodetect_encoding, kwargs)
    if ext in ("xls", "xlsx", "xlsm", "xlsb", "odf", "ods", "odt"):
        engine = {"xls": "xlrd", "xlsx": "openpyxl", "xlsm": "openpyxl", "xlsb": "pyxlsb"}.get(ext, "odf")
        kwargs.setdefault("engine", engine)
        if kwargs["engine"] == "pyxlsb":
            import importlib.util
            if importlib.util.find_spec("pyxlsb") is None:
                raise ImportError("reading .xlsb needs the pyxlsb module, which this image does not have "
                                  "(Debian does not package it); save the workbook as .xlsx instead")
        return pd.read_excel(path, **kwargs)
    raise ValueError(f"read_df: unsupported file type '.{ext}' for {path} "
                     "(supported: csv, tsv, xls, xlsx, xlsm, xlsb, odf, ods, odt)")


def _kbox_read_text(reader, path, autodetect_encoding, kwargs):
    """Call reader; on UnicodeDecodeError retry with detected and common CJK-friendly encodings."""
    try:
        return reader(path, **kwargs)
    except UnicodeDecodeError as first:
        if not autodetect_encoding:
            raise
        tried = [kwargs.get("encoding") or "utf-8"]
        for enc in _kbox_candidate_encodings(path):
            if enc in tried:
                continue
            tried.append(enc)
            try:
                return reader(path, **dict(kwargs, encoding=enc))
            except (UnicodeDecodeError, LookupError):
                continue
        raise UnicodeDecodeError(first.encoding, first.object, first.start, first.end,
                                 f"{first.reason}; also tried encodings: {', '.join(tried)}") from first


def _kbox_candidate_encodings(path, sample_size=256 * 1024):
    """Encodings to try for a text file: chardet's guesses (best first), then fallbacks."""
    import codecs
    import chardet

    with open(path, "rb") as f:
        raw = f.read(sample_size)
    found = []
    for guess in chardet.detect_all(raw):
        enc = (guess.get("encoding") or "").lower()
        if not enc or enc == "ascii":
            continue
        if enc in ("gb2312", "gbk"):
            enc = "gb18030"  # superset: GB2312 guesses often contain GBK-only characters
        try:
            found.append(codecs.lookup(enc).name)
        except LookupError:
            continue
    return found + ["utf-8-sig", "gb18030"]
