# kbox startup 30: matplotlib and seaborn with the CJK font "Noto Serif CJK SC" (sans fallback),
# and an ASCII minus sign so negative tick labels render in any font.
import matplotlib.pyplot as plt
import seaborn as sns


def _kbox_fonts():
    cjk = ["Noto Serif CJK SC", "Noto Sans CJK SC"]
    sns.set_theme(font=cjk[0], rc={"axes.unicode_minus": False})
    rc = plt.rcParams
    rc["font.family"] = cjk + ["sans-serif"]
    rc["font.serif"] = [cjk[0]] + [f for f in rc["font.serif"] if f not in cjk]
    rc["font.sans-serif"] = [cjk[1]] + [f for f in rc["font.sans-serif"] if f not in cjk]
    rc["axes.unicode_minus"] = False


_kbox_fonts()
del _kbox_fonts
