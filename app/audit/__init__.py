"""The audit trail: who corrected or erased which customer, and when."""
