"""Offline evaluation: ranking metrics, the evaluation loop and its reports."""
