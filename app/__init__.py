"""Purchase capture service: records purchases and upserts the buying customer."""
