"""datamill.ui"""
