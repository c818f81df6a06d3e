"""Similar-creative search over a version's creatives collection (service), and keeping that collection complete
for a new version (backfill). Runs on the index owner; the API reaches it through the search task."""
