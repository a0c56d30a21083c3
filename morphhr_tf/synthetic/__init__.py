"""Synthetic data sets the project generates for tests, demos and benchmarks.

Generators (import the module you need; nothing is imported here):

- :mod:`morphhr_tf.synthetic.cbis_ddsm`: a CBIS-DDSM-shaped tree of valid MG
  DICOM files with the case-description CSVs and TCIA's ``metadata.csv``,
  optionally with the fine-detail specks
  (``python -m morphhr_tf.synthetic.cbis_ddsm --out DIR --patients N --seed S``);
  it runs the ``cbis_*`` modules: :mod:`~morphhr_tf.synthetic.cbis_plan`
  (patients, images, findings, fake identifiers),
  :mod:`~morphhr_tf.synthetic.cbis_dicom` (pixel encoding, DICOM files),
  :mod:`~morphhr_tf.synthetic.cbis_layout` (folder and file names),
  :mod:`~morphhr_tf.synthetic.cbis_writer` (each image's files) and
  :mod:`~morphhr_tf.synthetic.cbis_csv` (the CSVs);
- :mod:`morphhr_tf.synthetic.render`: the mammogram renderer it uses (breast
  shape, power-law parenchyma, pectoral muscle, masses, calcifications);
- :mod:`morphhr_tf.synthetic.fine_detail`: the fine-detail task, numpy arrays
  whose label is visible at high resolution only;
  :mod:`morphhr_tf.synthetic.fine_detail_mammogram` draws the same signal into
  a full synthetic mammogram;
- :mod:`morphhr_tf.synthetic.chestxray14`: a ChestX-ray14-shaped tree in the
  NIH layout (``Data_Entry_2017.csv`` or the v2020 file, ``images_NNN/images/``
  or ``images/``, the official split lists, ``BBox_List_2017.csv``) of 8-bit
  PNG chest radiographs whose 14 findings differ in scale
  (``python -m morphhr_tf.synthetic.chestxray14 OUT --patients N``); it draws
  with :mod:`~morphhr_tf.synthetic.chestxray14_render`.
"""
