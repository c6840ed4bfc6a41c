"""Every engine compared in one report: ``flask --app wsgi compare`` / ``make compare``.

:mod:`.run` runs the conformance suite per leg, the users' job examples
(:mod:`.examples`) and the quick bench; :mod:`.results` reads the JUnit files into the
case x leg matrix and its parity breaks; :mod:`.figures` reads capabilities, bench and
fault figures; :mod:`.render` writes the Markdown, the HTML and the chart.
"""
