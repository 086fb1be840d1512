"""The numbers printed in Figure 3 of Bakshi & Kleindorfer (2009), transcribed as printed.

Used by the ``jaxgames figure3`` command to show computed values next to the source's.
Strings keep the printed precision (the number of decimals is the comparison precision).
"""

NONCOOPERATIVE = ("y_ss", "y_su", "y_r", "P_ss", "P_su", "P_r", "t_ss", "t_su", "t_r")
BARGAINING = ("y_ss", "y_su", "y_rs", "y_ru", "C_ss", "C_su", "C_r",
              "red_ss", "red_su", "red_r")

PRINTED_NONCOOPERATIVE = (
    ("15,974.45", "27,047.19", "56,048.04", "0.01672", "0.02090", "0.00319",
     "55,683.03", "75,089.10", "238,215.70"),
    ("61,869.29", "84,415.74", "21,762.46", "0.00422", "0.00527", "0.01256",
     "195,700.90", "226,580.69", "56,678.69"),
    ("36,609.97", "65,345.95", "46,358.43", "0.00167", "0.00208", "0.00031",
     "76,205.57", "113,274.88", "228,074.16"),
    ("82,788.51", "123,069.12", "11,737.83", "0.00042", "0.00052", "0.00125",
     "216,170.89", "264,784.83", "46,541.76"),
    ("10,985.01", "32,699.61", "90,268.13", "0.000004", "0.00001", "0.00033",
     "314,320.23", "339,368.17", "124,231.30"),
)

PRINTED_BARGAINING = (
    ("69,645.08", "94,135.39", "62,038.98", "62,018.02", "8,480.46", "27,886.53",
     "191,013.12", "84.77%", "62.86%", "19.82%"),
    ("69,645.08", "94,135.39", "62,038.98", "62,018.02", "165,242.10", "196,121.88",
     "26,219.89", "15.56%", "13.44%", "53.74%"),
    ("90,260.00", "132,408.49", "51,977.70", "51,975.62", "29,049.77", "66,119.08",
     "180,918.36", "61.88%", "41.63%", "20.68%"),
    ("90,260.00", "132,408.49", "51,977.70", "51,975.62", "185,758.01", "234,371.95",
     "16,128.88", "14.07%", "11.49%", "65.35%"),
    ("11,337.21", "33,404.01", "167,021.07", "167,020.95", "202,680.26", "227,728.20",
     "12,591.33", "35.52%", "32.90%", "89.86%"),
)


def format_like(value: float, printed: str) -> str:
    """Format ``value`` with the thousands separators, decimals and % sign of ``printed``."""
    percent = printed.endswith("%")
    body = printed.rstrip("%")
    decimals = len(body.split(".")[1]) if "." in body else 0
    v = 100.0 * value if percent else value
    text = f"{v:,.{decimals}f}" if "," in body or abs(v) >= 1000 else f"{v:.{decimals}f}"
    return text + ("%" if percent else "")
