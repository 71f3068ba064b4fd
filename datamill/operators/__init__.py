"""datamill.operators"""
