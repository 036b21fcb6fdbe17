# kbox startup 00: pandas display options suited to an agent reading text output.
import pandas as pd

pd.set_option("display.width", 2048)
pd.set_option("display.max_rows", 8)
pd.set_option("display.max_columns", 40)
pd.set_option("display.max_colwidth", 40)
pd.set_option("display.precision", 3)
