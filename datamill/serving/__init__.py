"""datamill.serving"""
