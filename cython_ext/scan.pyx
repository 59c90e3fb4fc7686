# placeholder replaced by the ingest scan
def ping():
    return 1
