"""Stage 6, the report: Allure results and labels, the timeline picture, the offline HTML
report, secret scrubbing.
"""
